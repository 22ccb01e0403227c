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
    exec(compile(code, str(DOC), "exec"), {"__name__": "__docs__"})
