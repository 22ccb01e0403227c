"""Where layers draw their randomness when nobody gave them a generator.

Initial weights come from ``layer._rng`` when a container assigned one, else from :func:`weights_rng`;
dropout masks from a layer's own ``seed``, else :func:`dropout_rng`; the order in which ``fit``
visits shuffled samples from :func:`shuffle_rng`. :func:`set_random_seed` reseeds the module
generators from one seed (as independent streams), so a script that calls it first is
reproducible end to end.
"""
import numpy

_generators = {}


def set_random_seed(seed):
    """Reseed the generators that layers use for initial weights and dropout masks.

    >>> import flowlearn as fl
    >>> fl.layers.set_random_seed(0)
    >>> a = fl.layers.Dense(2)(fl.tensor([[1.0, 2.0]]))
    >>> fl.layers.set_random_seed(0)
    >>> b = fl.layers.Dense(2)(fl.tensor([[1.0, 2.0]]))
    >>> bool((a.numpy() == b.numpy()).all())
    True
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, numpy.integer)) or seed < 0):
        raise ValueError(f"set_random_seed: expected a non-negative integer or None; got {seed!r}.")
    weights, dropout, shuffle = numpy.random.SeedSequence(seed).spawn(3)
    _generators["weights"] = numpy.random.default_rng(weights)
    _generators["dropout"] = numpy.random.default_rng(dropout)
    _generators["shuffle"] = numpy.random.default_rng(shuffle)


def weights_rng():
    """The module generator for initial weights."""
    return _generators["weights"]


def dropout_rng():
    """The module generator for dropout masks."""
    return _generators["dropout"]


def shuffle_rng():
    """The module generator for the order in which training visits samples."""
    return _generators["shuffle"]


set_random_seed(None)
