"""Layers as plain JSON data and back: how a model is saved without pickle.

``serialize(layer)`` gives ``{"class_name", "config"}``; ``deserialize`` builds a new layer from it,
looking the class up among the registered Layer subclasses (every subclass registers itself under its
class name when it is defined) or in ``custom_objects``. Nothing in the data is ever imported or run.
"""
from .base import Layer, registered_layers


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
        Classes to use for names the registry does not know (or to override it).
    """
    if not isinstance(data, dict) or not isinstance(data.get("class_name"), str) or not isinstance(
            data.get("config"), dict):
        raise ValueError(f"deserialize: expected a dict with 'class_name' (str) and 'config' (dict); got {data!r}.")
    classes = registered_layers()
    classes.update(custom_objects or {})
    cls = classes.get(data["class_name"])
    if cls is None or not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise ValueError(
            f"deserialize: unknown layer class {data['class_name']!r}; known: {sorted(registered_layers())}. "
            "Pass custom_objects={name: class} for your own layers."
        )
    return cls.from_config(dict(data["config"]))
