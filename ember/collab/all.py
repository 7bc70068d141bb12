"""Everything for the course's recommender lesson: `from ember.collab.all import *`."""

from ember.basics import *
from ember.basics import __all__ as _basics_all
from ember.collab import *
from ember.collab import __all__ as _collab_all

__all__ = [*_basics_all, *_collab_all]
