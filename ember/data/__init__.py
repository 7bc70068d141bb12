"""ember.data: loaders (this issue) and, later, the DataBlock API."""

from ember.data.loaders import DataLoader, DataLoaders, DeviceLoader

__all__ = ["DataLoader", "DataLoaders", "DeviceLoader"]
