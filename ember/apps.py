"""ember's applications: the one table through which `load_learner` and the server find an application.

An export file names its application ("vision", "collab"); loading imports the module this table gives
for that name, and nothing else. A name not in the table (or a module path) is refused before anything
is imported, so a file cannot make ember import or run code of its choosing. A new application adds
one line here and registers its `AppSpec` (`ember.learner.app`) in the module named.

>>> load_app("collab").name
'collab'
"""

from __future__ import annotations

import importlib

from ember.learner.app import AppSpec, registered_app

__all__ = ["APPS", "UnknownApp", "load_app"]

APPS: dict[str, str] = {
    "vision": "ember.vision.app",
    "collab": "ember.collab.app",
    "generative": "ember.generative.app",
}


class UnknownApp(ValueError):
    """A name that is not one of ember's applications."""


def load_app(name: object) -> AppSpec:
    """The spec of ember's application `name`, importing only the module `APPS` gives for it."""
    module = APPS.get(name) if isinstance(name, str) else None
    if module is None:
        raise UnknownApp(
            f"{name!r} is not one of ember's applications ({', '.join(sorted(APPS))}); an export names "
            "one of them, and only ember.apps.APPS decides which module that imports"
        )
    importlib.import_module(module)
    spec = registered_app(name)  # type: ignore[arg-type]
    if spec is None:
        raise UnknownApp(f"{module} registered no application named {name!r}")
    return spec
