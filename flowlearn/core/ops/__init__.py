"""Every primitive op, flat: ``flowlearn.ops.relu``, ``flowlearn.ops.conv2d``, ...

Families live one per module (arithmetic, math, reduction, shape, indexing, linalg, activation,
normalization, noise, conv, pooling); this package re-exports them and gives Tensor its operators.
"""
from .arithmetic import *  # noqa: F401,F403
from .math import *  # noqa: F401,F403
from .reduction import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .indexing import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .activation import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .noise import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from ._tensor_methods import install as _install

_install()
