"""Every ```python block of the user docs and the README runs as written (blocks of one page share a namespace,
in order)."""
import re
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md") if p.name != "estimators.md")  # estimators.md: tests/estimators
PAGES.append(ROOT / "README.md")


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_page_examples_run(page):
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert blocks, f"{page.name} has no python examples"
    namespace = {"__name__": "__docs__"}
    # The examples train small networks: a second BLAS thread gains nothing, and on a busy machine its
    # spinning makes them ~10x slower (as in tests/estimators/conftest.py).
    with threadpool_limits(limits=1, user_api="blas"):
        for block in blocks:
            exec(compile(block, str(page), "exec"), namespace)
