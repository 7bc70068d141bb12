"""Interpreting a classifier; the class lives in `ember.learner.interpret` (it needs only a Learner) and
is named here too, so `from ember.vision.all import *` brings it as the course's notebooks expect.

>>> interp = ClassificationInterpretation.from_learner(learn)  # doctest: +SKIP
"""

from ember.learner.interpret import ClassificationInterpretation

__all__ = ["ClassificationInterpretation"]
