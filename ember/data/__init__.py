"""ember.data: loaders, the DataBlock API (blocks, getters, splitters, transforms) and the data sets
(`untar_data`, `URLs`, `builtin_data`)."""

from ember.data.block import DataBlock, TfmdDataLoaders
from ember.data.blocks import CategoryBlock, MultiCategoryBlock, RegressionBlock, TransformBlock
from ember.data.builtin import builtin_data
from ember.data.datasets import Datasets, DatasetSplit
from ember.data.errors import DataError, DownloadError
from ember.data.external import URLs, download_url, untar_data
from ember.data.getters import (
    ColReader,
    RegexLabeller,
    get_files,
    parent_label,
    using_attr,
)
from ember.data.loaders import DataLoader, DataLoaders, DeviceLoader
from ember.data.missing import MissingValuesWarning
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
    "DownloadError",
    "FuncSplitter",
    "GrandparentSplitter",
    "IndexSplitter",
    "MissingValuesWarning",
    "MultiCategoryBlock",
    "Pipeline",
    "RandomSplitter",
    "RegexLabeller",
    "RegressionBlock",
    "TfmdDataLoaders",
    "TrainTestSplitter",
    "Transform",
    "TransformBlock",
    "URLs",
    "builtin_data",
    "download_url",
    "get_files",
    "parent_label",
    "untar_data",
    "using_attr",
]
