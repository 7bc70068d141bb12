"""Objects described as JSON and rebuilt from it: how an export file records its pipeline without pickle.

A class takes part by defining `to_config()`, which returns the JSON-able keyword arguments that
rebuild it, and by being registered by name. Rebuilding looks the name up in this table and nowhere
else, so a file can only name types ember (or the user, on purpose) registered: reading one never
imports a module or runs a function the file names.

>>> class Scale:
...     def __init__(self, k: float) -> None: self.k = k
...     def to_config(self) -> dict: return {"k": self.k}
>>> register_config_type(Scale)
>>> from_config(to_config(Scale(2.0))).k
2.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "ConfigError",
    "from_config",
    "register_config_type",
    "registered_config_types",
    "registered_type",
    "to_config",
]

_TYPES: dict[str, Callable[..., Any]] = {}


class ConfigError(ValueError):
    """An object that cannot be described as JSON, or a description naming no registered type."""


def register_config_type(*types: Callable[..., Any]) -> None:
    """Let `from_config` rebuild these classes (or builder functions), by their `__name__`.

    A name belongs to one class: registering another class under a taken name (your own `Resize`) is
    an error, since every later export and `load_learner` would silently use yours. Registering the same
    class again, or a notebook cell that defines it again, is fine.
    """
    for t in types:
        old = _TYPES.get(t.__name__)
        if old is not None and _origin(old) != _origin(t):
            raise ValueError(
                f"register_config_type: the name {t.__name__!r} is taken by {_origin(old)}, so {_origin(t)} "
                "cannot have it (exports name types by their bare name); give your class another name, "
                f"e.g. My{t.__name__}"
            )
        _TYPES[t.__name__] = t


def _origin(t: Callable[..., Any]) -> str:
    """'module.qualname': a class defined again by re-running a notebook cell has the same origin."""
    return f"{t.__module__}.{t.__qualname__}"


def registered_config_types() -> list[str]:
    return sorted(_TYPES)


def registered_type(name: str) -> Callable[..., Any] | None:
    """The class or builder registered under `name`, or None."""
    return _TYPES.get(name)


def to_config(obj: Any) -> dict[str, Any]:
    """`{"type": <class name>, **obj.to_config()}`; an error naming `obj` when it cannot be described."""
    name = type(obj).__name__
    if _TYPES.get(name) is not type(obj) or not hasattr(obj, "to_config"):
        raise ConfigError(
            f"{obj!r} ({type(obj).__module__}.{type(obj).__qualname__}) cannot be described in an export "
            "file: only ember's own blocks, transforms, losses and models can, and classes registered "
            "with ember.core.serial.register_config_type that define to_config()"
        )
    return {"type": name, **obj.to_config()}


def from_config(cfg: dict[str, Any]) -> Any:
    """Rebuild what `to_config` described: `cls.from_config(cfg)` when the class defines it, else
    `cls(**cfg)`, where `cls` is the registered type named by `cfg["type"]`."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("type"), str):
        raise ConfigError(f"expected a description {{'type': name, ...}}, got {cfg!r}")
    kwargs = {k: v for k, v in cfg.items() if k != "type"}
    cls = _TYPES.get(cfg["type"])
    if cls is None:
        raise ConfigError(
            f"the file names a type {cfg['type']!r} that is not registered here (known: "
            f"{', '.join(registered_config_types())}); was it made by a newer ember, or with a class of "
            "your own that must be imported (and registered) before loading?"
        )
    build = getattr(cls, "from_config", None)
    try:
        return build(kwargs) if build is not None else cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"cannot rebuild {cfg['type']} from {kwargs}: {e}") from e
