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
def test_page_examples_run(page, tmp_path, monkeypatch):
    # Examples write where a user would (exports/iris, models/...): in a scratch folder, not the checkout.
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert blocks, f"{page.name} has no python examples"
    namespace = {"__name__": "__docs__"}
    # The examples train small networks: a second BLAS thread gains nothing, and on a busy machine its
    # spinning makes them ~10x slower (as in tests/estimators/conftest.py).
    with threadpool_limits(limits=1, user_api="blas"):
        for block in blocks:
            exec(compile(block, str(page), "exec"), namespace)


def _quickstart_command(marker):
    text = (ROOT / "README.md").read_text()
    found = re.search(rf"<!-- quickstart:{marker} -->\n```bash\n(.*?)\n```", text, flags=re.S)
    assert found, f"README.md has no bash block after <!-- quickstart:{marker} -->"
    return found.group(1)


def test_readme_quick_start_runs_a_registered_command():
    # `.ci/run` executes the test block; the run block is what a new user types first, so it must name a
    # command that the installed `flowlearn` script really has.
    from flowlearn import cli

    install, run = _quickstart_command("run").split(" && ")
    assert install == "pip install ."
    program, name, *options = run.split()
    assert program == "flowlearn" and name in cli.COMMANDS, run
    assert _quickstart_command("test") == "pip install '.[test]' && python -m pytest -q"


def test_ops_import_as_the_docs_write_it():
    import flowlearn
    import flowlearn.ops
    from flowlearn import core, ops

    assert flowlearn.ops is ops is core.ops  # one module under two names, not a copy
    assert callable(flowlearn.ops.relu)


def test_estimator_checks_claim_names_every_expected_failure():
    # docs/estimators.md, before its first table, names each scikit-learn check the estimators declare as
    # failing. (That scikit-learn declares check_sample_weight_equivalence_on_dense_data for its SGDClassifier
    # and LogisticRegression is read from its private sklearn.utils._test_common.instance_generator, checked
    # by hand for 1.9: importing it loads every scikit-learn estimator, too slow for a docs test.)
    from tests.estimators.test_estimator_checks import ESTIMATORS, expected_failures

    introduction = (DOCS / "estimators.md").read_text().split("\n| estimator |")[0]
    named = set(re.findall(r"`(check_\w+)`", introduction))
    declared = set().union(*(expected_failures(estimator) for estimator in ESTIMATORS))
    assert named == declared
