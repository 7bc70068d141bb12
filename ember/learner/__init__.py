"""ember.learner: the Learner and its checkpoints."""

from ember.learner.learner import Learner

__all__ = ["Learner"]
