"""flowlearn: scikit-learn estimators and Keras-style layers on a compact autodiff core."""
from .core import (
    Graph, Tensor, backend, enable_grad, floatx, get_num_threads, is_grad_enabled, is_training, no_grad, ops,
    set_floatx, set_num_threads, tensor, trace, training_mode,
)
from . import callbacks, io, layers

import sys as _sys

# The ops live in flowlearn.core.ops; the docs write `from flowlearn import ops`, and `import flowlearn.ops`
# finds that same module instead of failing (an alias, not a second module).
_sys.modules[__name__ + ".ops"] = ops
# Likewise `fl.feature_column` / `import flowlearn.feature_column`, as TensorFlow spelled it (it lives in io).
from .io import feature_column
_sys.modules[__name__ + ".feature_column"] = feature_column
# And `fl.image.random_flip_left_right` & co., as tf.image spelled them (flowlearn.io.augmentation).
from .io import augmentation as image
_sys.modules[__name__ + ".image"] = image
from .layers import Sequential, VariableStore, load_model, variable_scope
from .layers.variable_scope import AUTO_REUSE, get_variable_scope
from . import distributed, metrics, train

__version__ = "0.1.0"

_ESTIMATORS = ("LinearRegressor", "LinearClassifier", "DNNClassifier", "DNNRegressor", "AutoEncoder", "CNNClassifier")


def __getattr__(name):
    # The estimators import scikit-learn (about a second): loaded on first use, not by `import flowlearn`.
    if name == "estimators" or name in _ESTIMATORS:
        import importlib

        estimators = importlib.import_module(".estimators", __name__)
        return estimators if name == "estimators" else getattr(estimators, name)
    raise AttributeError(f"module 'flowlearn' has no attribute {name!r}")
