"""Serving an exported model over HTTP: a page to try it and a JSON API (`ember serve`). What a request
holds and what the answer says come from the model's application (`RequestIO` in `ember.learner.app`)."""

from ember.learner.app import InputRejected
from ember.serve.app import create_app, run_server
from ember.serve.model import ServedModel, ServeError

__all__ = ["InputRejected", "ServeError", "ServedModel", "create_app", "run_server"]
