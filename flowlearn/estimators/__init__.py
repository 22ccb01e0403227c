"""scikit-learn estimators with neural networks inside: drop them into Pipeline, GridSearchCV, cross_val_score.

All train through flowlearn's one training loop and pass scikit-learn's estimator checks.
"""
from .autoencoder import AutoEncoder
from .cnn import CNNClassifier
from .dnn import DNNClassifier, DNNRegressor
from .linear import LinearClassifier, LinearRegressor
from ._persistence import load
from .dask_compat import patch_dask_ml_searches  # imports dask-ml only when called

__all__ = [
    "LinearRegressor", "LinearClassifier", "DNNClassifier", "DNNRegressor", "AutoEncoder", "CNNClassifier", "load",
    "patch_dask_ml_searches",
]

# The model_fn Estimator (tf.estimator's programming model), see docs/estimator.md.
from .estimator import Estimator, WarmStartSettings
from .experiment import EvalSpec, Exporter, TrainSpec, train_and_evaluate
from .run_config import RunConfig
from .spec import EstimatorSpec, ModeKeys

__all__ += [
    "Estimator", "EstimatorSpec", "ModeKeys", "RunConfig", "WarmStartSettings", "TrainSpec", "EvalSpec", "Exporter",
    "train_and_evaluate",
]
