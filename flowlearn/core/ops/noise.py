"""Dropout: zero a random fraction ``rate`` of the values in training and scale the rest by
``1 / (1 - rate)`` (inverted dropout), so inference is the identity.

The mask is a pure function of the primitive's attrs: ``xp.random.default_rng(seed)`` draws it,
so a recorded or exported node replays the very same mask (for a given array module: numpy and
cupy generators differ). Each call of :func:`dropout` draws a fresh integer seed: from ``rng``
when given, else from ``seed`` and a per-seed call counter (so successive calls differ, and a new
process repeats the same sequence), else from a module-level generator.
"""
import itertools
import numbers

import numpy

__all__ = ["dropout"]

from ..config import is_training
from ..primitive import Primitive, apply
from ..tensor import as_tensor
from ._args import float_input

# Seeds stay below 2**53 so that any JSON reader (JavaScript's included) keeps them exact.
_SEED_BOUND = 2**53
_global_rng = numpy.random.default_rng()
_seed_counters = {}


class Dropout(Primitive):
    name = "dropout"

    @staticmethod
    def forward(xp, x, rate, seed):
        # float32 draws (no float64 temporary); the comparison writes the 0/1 mask into the draws'
        # own buffer when the dtypes agree, then the scale turns it into the multiplier.
        draws = xp.random.default_rng(seed).random(x.shape, dtype=xp.float32)
        mask = draws if x.dtype == draws.dtype else xp.empty(x.shape, dtype=x.dtype)
        xp.greater_equal(draws, rate, out=mask)
        mask *= 1.0 / (1.0 - rate)
        return x * mask, mask

    @staticmethod
    def backward(xp, grad, mask, needs, rate, seed):
        return (grad * mask,)


def _draw_seed(seed, rng):
    if rng is not None:
        if seed is not None:
            raise ValueError("dropout: expected at most one of `seed` and `rng`; got both.")
        if not isinstance(rng, numpy.random.Generator):
            raise TypeError(f"dropout: expected `rng` to be a numpy.random.Generator; got {type(rng).__name__}.")
        return int(rng.integers(_SEED_BOUND))
    if seed is None:
        return int(_global_rng.integers(_SEED_BOUND))
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"dropout: expected `seed` to be a non-negative integer or None; got seed={seed!r}.")
    count = next(_seed_counters.setdefault(int(seed), itertools.count()))
    state = numpy.random.SeedSequence((int(seed), count)).generate_state(1, numpy.uint64)
    return int(state[0]) >> 11  # 64 -> 53 bits


def dropout(x, rate, training=None, seed=None, rng=None):
    """Randomly zero a fraction ``rate`` of ``x`` in training, scaling the rest by ``1 / (1 - rate)``.

    Outside training (or with ``rate=0``) it returns ``x`` itself and records nothing.

    Parameters
    ----------
    x : Tensor
    rate : float in [0, 1)
        The probability of dropping each value.
    training : bool or None
        None reads :func:`flowlearn.core.config.is_training`.
    seed : int, optional
        Makes the sequence of masks repeatable from process start; successive calls still differ.
    rng : numpy.random.Generator, optional
        Draws each call's seed instead (a layer keeps one to own its sequence).

    >>> import flowlearn as fl
    >>> x = fl.tensor([1.0, 1.0, 1.0, 1.0])
    >>> fl.ops.dropout(x, 0.5) is x  # not training
    True
    >>> y = fl.ops.dropout(x, 0.5, training=True, seed=0)
    >>> sorted(set(y.tolist())) <= [0.0, 2.0]
    True
    """
    x = as_tensor(x)
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
        raise ValueError(f"dropout: expected `rate` in [0, 1); got rate={rate!r}.")
    if training is None:
        training = is_training()
    if not training or rate == 0:
        return x
    return apply(Dropout, (float_input("dropout", x),), rate=float(rate), seed=_draw_seed(seed, rng))
