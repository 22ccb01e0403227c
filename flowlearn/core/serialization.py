"""Objects that are their constructor arguments: config, rebuilding, and lookup by name.

Initializers, losses, metrics, regularizers, learning-rate schedules and optimizers are small objects
whose constructor arguments are their whole configuration. :class:`Serializable` gives them
``get_config`` (those arguments, read back from the attributes of the same name), ``from_config`` and
a ``repr``; each family's base class holds a :class:`Registry` where its public subclasses register
under their class name, which is how ``{"class_name": ..., "config": ...}`` dicts and names such as
``"mse"`` become objects again. Nothing in the data is ever imported or run.

>>> from flowlearn.core import initializers
>>> init = initializers.RandomUniform(-1.0, 1.0)
>>> init.get_config()
{'minval': -1.0, 'maxval': 1.0}
>>> initializers.Initializer.registry.from_dict({"class_name": "RandomUniform", "config": init.get_config()})
RandomUniform(minval=-1.0, maxval=1.0)
"""
import inspect


class Registry:
    """A family's classes by class name, plus short names, for the family's ``get``/``deserialize``.

    ``names`` (listed in errors) and ``aliases`` (accepted quietly) map short names to classes or
    factories; ``fold`` normalises a name before it is looked up there (e.g. to ignore case).
    """

    def __init__(self, kind, fold=None):
        self.kind = kind
        self.base = None  # the family's base class, set when it is defined
        self.classes = {}
        self.names = {}
        self.aliases = {}
        self._fold = fold or (lambda name: name)

    def find(self, name):
        """The class (or factory) called ``name``: a class name, or one of the short names."""
        found = self._lookup(name)
        if found is None:
            raise ValueError(f"Unknown {self.kind} {name!r}; expected one of {sorted(self.names)} (or a class name).")
        return found

    def resolve(self, identifier, error):
        """A family's ``get``: None and instances pass through, a name makes a new default object, a
        ``{"class_name", "config"}`` dict rebuilds one, another callable passes through; anything else is
        a TypeError with ``error``, a template formatted with ``identifier``."""
        if identifier is None or isinstance(identifier, self.base):
            return identifier
        if isinstance(identifier, str):
            return self.find(identifier)()
        if isinstance(identifier, dict):
            return self.from_dict(identifier)
        if callable(identifier):
            return identifier
        raise TypeError(error.format(identifier=identifier))

    def from_dict(self, data, **overrides):
        """A new object from ``{"class_name": ..., "config": ...}``; ``overrides`` replace config entries."""
        if not isinstance(data, dict) or "class_name" not in data:
            raise ValueError(f"Expected a dict {{'class_name': ..., 'config': ...}} describing the {self.kind}; "
                             f"got {data!r}.")
        cls = self._lookup(data["class_name"])
        if not isinstance(cls, type):  # short names may stand for factories, which have no from_config
            raise ValueError(
                f"Unknown {self.kind} class_name {data['class_name']!r}; expected one of {sorted(self.classes)}."
            )
        return cls.from_config({**(data.get("config") or {}), **overrides})

    def serialize(self, obj, reason):
        """``{"class_name": ..., "config": ...}`` for an object of this family (None stays None); anything
        else is a TypeError that ends with ``reason``."""
        if obj is None:
            return None
        if getattr(obj, "registry", None) is not self:
            raise TypeError(f"Cannot serialize the {self.kind} {obj!r}: {reason}")
        return {"class_name": type(obj).__name__, "config": obj.get_config()}

    def _lookup(self, name):
        found = self.classes.get(name)
        if found is None and isinstance(name, str):
            short = {self._fold(key): value for key, value in {**self.names, **self.aliases}.items()}
            found = short.get(self._fold(name))
        return found


class Serializable:
    """Base of objects described by their constructor arguments, stored as attributes of the same names.

    A family's base class sets ``registry = Registry(kind)``; every public subclass (a name without a
    leading underscore) registers there under its class name when it is defined.
    """

    registry = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "registry" in vars(cls) and cls.registry is not None:
            cls.registry.base = cls
        if cls.registry is not None and "registry" not in vars(cls) and not cls.__name__.startswith("_"):
            cls.registry.classes[cls.__name__] = cls

    def get_config(self):
        """The constructor arguments as plain values: ``type(obj).from_config(config)`` rebuilds it."""
        parameters = list(inspect.signature(type(self).__init__).parameters.values())[1:]
        return {p.name: getattr(self, p.name) for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({args})"
