"""Serving an exported image classifier over HTTP: a page to try it and a JSON API (`ember serve`)."""

from ember.serve.app import create_app, run_server
from ember.serve.images import ImageRejected
from ember.serve.model import ServedModel, ServeError

__all__ = ["ImageRejected", "ServeError", "ServedModel", "create_app", "run_server"]
