"""ember: the fast.ai course's deep learning API on plain, typed, debuggable PyTorch."""

__version__ = "0.1.0"
