"""Shared fixtures: the ``device`` fixture runs a test on the CPU and, where cupy sees a GPU, on the GPU.

GPU cases are skipped visibly ("no GPU: ...") on machines without one, so the CPU suite never needs it.
Run only the GPU cases with ``pytest -m gpu``.
"""
import numpy
import pytest

from flowlearn.core import backend


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: runs on the GPU through cupy (skipped where there is none)")
    config.addinivalue_line("markers", "slow: takes longer than about a minute")


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def device(request):
    if request.param == "gpu" and not backend.gpu_available():
        pytest.skip("no GPU: cupy is not installed or sees no CUDA device")
    return request.param


@pytest.fixture
def rng():
    return numpy.random.default_rng(0)


def pytest_report_header(config):
    if backend.gpu_available():
        return "flowlearn devices: cpu, gpu (cupy) - gpu-marked cases run"
    return "flowlearn devices: cpu only - every gpu-marked case is skipped (no cupy or no CUDA device)"
