"""The examples of docs/estimators.md run as written."""
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "estimators.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.parametrize(
    "code",
    [pytest.param(code, marks=pytest.mark.slow) if "load_mnist" in code else code for code in BLOCKS],
    ids=[f"example_{index}" for index in range(len(BLOCKS))],
)
def test_example_runs(code):
    namespace = {"__name__": "__docs__"}
    exec(compile(code, str(DOC), "exec"), namespace)
    if "accuracy" in namespace:  # the MNIST CNN example: what the docs promise, and what the defaults must reach
        assert namespace["accuracy"] >= 0.975


@pytest.fixture(autouse=True)
def one_blas_thread():
    # Overrides the estimator tests' one-thread fixture: the examples run as a user runs them, with the
    # default thread policy (flowlearn keeps small products on one BLAS thread by itself).
    yield
