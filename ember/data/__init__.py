"""ember.data: loaders and the DataBlock API (blocks, getters, splitters, transforms)."""

from ember.data.block import DataBlock, TfmdDataLoaders
from ember.data.blocks import CategoryBlock, MultiCategoryBlock, RegressionBlock, TransformBlock
from ember.data.datasets import Datasets, DatasetSplit
from ember.data.errors import DataError
from ember.data.getters import (
    ColReader,
    RegexLabeller,
    get_files,
    get_image_files,
    image_extensions,
    parent_label,
    using_attr,
)
from ember.data.loaders import DataLoader, DataLoaders, DeviceLoader
from ember.data.splitters import (
    ColSplitter,
    FuncSplitter,
    GrandparentSplitter,
    IndexSplitter,
    RandomSplitter,
    TrainTestSplitter,
)
from ember.data.transforms import Pipeline, Transform

__all__ = [
    "CategoryBlock",
    "ColReader",
    "ColSplitter",
    "DataBlock",
    "DataError",
    "DataLoader",
    "DataLoaders",
    "DatasetSplit",
    "Datasets",
    "DeviceLoader",
    "FuncSplitter",
    "GrandparentSplitter",
    "IndexSplitter",
    "MultiCategoryBlock",
    "Pipeline",
    "RandomSplitter",
    "RegexLabeller",
    "RegressionBlock",
    "TfmdDataLoaders",
    "TrainTestSplitter",
    "Transform",
    "TransformBlock",
    "get_files",
    "get_image_files",
    "image_extensions",
    "parent_label",
    "using_attr",
]
