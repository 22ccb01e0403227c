"""Shared fixtures: the ``device`` fixture runs a test on the CPU and, where cupy sees a GPU, on the GPU.

The GPU cases exist only where cupy sees a device: on a machine without one they are not generated at all
(rather than hundreds of "no GPU" skips burying the skips that mean something), and the report header says
so. Run only the GPU cases with ``pytest -m gpu``.
"""
import numpy
import pytest

import flowlearn as fl
from flowlearn.core import backend


# Decided once, at collection: asking cupy for a device costs a few hundred milliseconds the first time.
DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)] if backend.gpu_available() else ["cpu"]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture
def rng():
    return numpy.random.default_rng(0)


@pytest.fixture
def float64():
    """Runs the test with float64 as the default float type."""
    previous = fl.floatx()
    fl.set_floatx("float64")
    yield
    fl.set_floatx(previous)


def pytest_report_header(config):
    if backend.gpu_available():
        return "flowlearn devices: cpu, gpu (cupy) - gpu-marked cases run"
    return "flowlearn devices: cpu only - no gpu cases are generated (no cupy or no CUDA device)"
