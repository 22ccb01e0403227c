"""Helpers shared by the estimator tests."""
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
