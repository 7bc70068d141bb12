"""Everything for looking inside a model: `from ember.interpret.all import *`."""

from ember.interpret import *
from ember.interpret import __all__ as _interpret_all

__all__ = [*_interpret_all]
