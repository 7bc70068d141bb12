"""ember.core: what every other package uses: devices, seeds, files, optimizers."""

from ember.core.optimizer import SGD, Adam, RMSProp, default_splitter
from ember.core.utils import (
    atomic_write,
    default_device,
    find_bs,
    listify,
    set_seed,
    to_cpu,
    to_detach,
    to_device,
)

__all__ = [
    "SGD",
    "Adam",
    "RMSProp",
    "default_splitter",
    "atomic_write",
    "default_device",
    "find_bs",
    "listify",
    "set_seed",
    "to_cpu",
    "to_detach",
    "to_device",
]
