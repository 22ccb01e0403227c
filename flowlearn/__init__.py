"""flowlearn: scikit-learn estimators and Keras-style layers on a compact autodiff core."""
from .core import (
    Graph, Tensor, backend, enable_grad, floatx, is_grad_enabled, is_training, no_grad, ops, set_floatx,
    tensor, trace, training_mode,
)

__version__ = "0.1.0"
