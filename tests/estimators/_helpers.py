"""Helpers shared by the estimator tests."""
import subprocess
import sys
import textwrap

import numpy

from flowlearn.estimators import AutoEncoder, CNNClassifier, DNNClassifier, DNNRegressor


def small(cls, width=32, **params):
    """A quick configuration of ``cls`` for tests on the 8x8 digits; ``width`` sizes its hidden layers."""
    sizes = {
        DNNClassifier: dict(hidden_units=(width,), dropout=0.2),
        DNNRegressor: dict(hidden_units=(width,), dropout=0.2),
        AutoEncoder: dict(hidden_units=(width, width // 4)),
        CNNClassifier: dict(conv_filters=(4,), dense_units=(width // 2,)),
    }.get(cls, {})
    return cls(**{"epochs": 3, "n_iter_no_change": None, "batch_size": 64, **sizes, **params})


def fit(estimator, X, y):
    """Fits ``estimator`` on X (and y, unless it is an AutoEncoder, which learns X alone)."""
    return estimator.fit(X) if isinstance(estimator, AutoEncoder) else estimator.fit(X, y)


def assert_loads_without_cupy(model, X, tmp_path, load_expression):
    """In a fresh Python where importing cupy fails, ``load_expression`` (which may use ``pickle`` and
    flowlearn.estimators' ``load``) must give an estimator on the CPU whose ``predict_proba(X)`` equals
    ``model``'s, bit for bit."""
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "expected.npy", model.predict_proba(X))
    script = textwrap.dedent(f"""
        import sys, pickle, numpy
        sys.modules["cupy"] = None  # any import of cupy now fails, as on a machine without it
        from flowlearn.estimators import load
        model = {load_expression}
        got = model.predict_proba(numpy.load({str(tmp_path / 'x.npy')!r}))
        numpy.testing.assert_array_equal(got, numpy.load({str(tmp_path / 'expected.npy')!r}))
        assert model._model.device == "cpu"
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
