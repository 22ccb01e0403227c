"""The op core: Tensor, autodiff, primitives on numpy/cupy, losses, metrics, optimizers,
initializers and tracing. Imports nothing else of flowlearn."""
from . import backend, initializers, losses, metrics, ops, optimizers, parallel
from .config import enable_grad, floatx, is_grad_enabled, is_training, no_grad, set_floatx, training_mode
from .parallel import get_num_threads, set_num_threads
from .primitive import Primitive, apply, get_primitive
from .tensor import Tensor, as_tensor, tensor
from .trace import Graph, TraceWarning, trace
