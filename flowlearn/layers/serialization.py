"""Layers as plain JSON data and back: how a model is saved without pickle.

``serialize(layer)`` gives ``{"class_name", "config"}``; ``deserialize`` builds a new layer from it,
looking the class up among the registered Layer subclasses (every subclass registers itself under its
class name when it is defined) or in ``custom_objects``. Nothing in the data is ever imported or run.

The ``custom_objects`` of a call stay in effect while the class's ``from_config`` runs, so a container
(a Sequential inside a Sequential, or your own) finds the custom classes of its nested layers however
deep they sit, without passing them on itself.
"""
import threading

from .base import Layer, registered_layers


class _Scope(threading.local):
    def __init__(self):
        self.custom_objects = {}


_scope = _Scope()


def serialize(layer):
    """``{"class_name": ..., "config": ...}`` for ``layer`` (JSON-compatible).

    >>> import flowlearn as fl
    >>> fl.layers.serialize(fl.layers.Dropout(0.5, name="drop"))["config"]["rate"]
    0.5
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"serialize: expected a Layer; got {type(layer).__name__}.")
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(data, custom_objects=None):
    """A new (unbuilt) layer from :func:`serialize` output.

    Parameters
    ----------
    data : dict
        ``{"class_name": str, "config": dict}``.
    custom_objects : dict of str to Layer subclass, optional
        Classes to use for names the registry does not know (or to override it), here and in the
        layers nested in this one (those of an enclosing ``deserialize`` call apply too).
    """
    if not isinstance(data, dict) or not isinstance(data.get("class_name"), str) or not isinstance(
            data.get("config"), dict):
        raise ValueError(f"deserialize: expected a dict with 'class_name' (str) and 'config' (dict); got {data!r}.")
    outer = _scope.custom_objects
    custom_objects = {**outer, **(custom_objects or {})}
    classes = registered_layers()
    classes.update(custom_objects)
    cls = classes.get(data["class_name"])
    if cls is None or not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise ValueError(
            f"deserialize: unknown layer class {data['class_name']!r}; known: {sorted(registered_layers())}. "
            "Pass custom_objects={name: class} for your own layers."
        )
    _scope.custom_objects = custom_objects
    try:
        return cls.from_config(dict(data["config"]))
    finally:
        _scope.custom_objects = outer
