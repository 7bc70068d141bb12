"""The DataBlock API on non-image data: blocks, getters, splitters, datasets, loaders, errors."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from ember.basics import (
    CategoryBlock,
    ColReader,
    ColSplitter,
    DataBlock,
    DataError,
    FuncSplitter,
    GrandparentSplitter,
    IndexSplitter,
    MissingValuesWarning,
    MultiCategoryBlock,
    RandomSplitter,
    RegexLabeller,
    RegressionBlock,
    TrainTestSplitter,
    Transform,
    TransformBlock,
    get_files,
    parent_label,
    using_attr,
)
from ember.data import transforms
from ember.data.transforms import CATEGORY, Pipeline, register_kind


@pytest.fixture
def df():
    return pd.DataFrame(
        {
            "x": [float(i) for i in range(50)],
            "y": ["odd" if i % 2 else "even" for i in range(50)],
            "tags": ["a b" if i % 3 == 0 else ("b" if i % 3 == 1 else "") for i in range(50)],
            "is_valid": [i >= 40 for i in range(50)],
        }
    )


def number_block(df_cols=("x", "y"), **kw) -> DataBlock:
    return DataBlock(
        blocks=(RegressionBlock, CategoryBlock),
        get_x=ColReader(df_cols[0]),
        get_y=ColReader(df_cols[1]),
        **kw,
    )


def test_datasets_give_encoded_targets_and_a_sorted_vocab(df):
    dsets = number_block(splitter=ColSplitter()).datasets(df)
    assert dsets.vocab == ["even", "odd"] and len(dsets.train) == 40 and len(dsets.valid) == 10
    x, y = dsets.train[3]
    assert x.item() == 3.0 and y.item() == 1  # "odd"


def test_dataloaders_batch_and_decode_labels(df):
    dls = number_block(splitter=ColSplitter()).dataloaders(df, bs=8, num_workers=0)
    xb, yb = dls.valid.one_batch()
    assert torch.equal(xb, torch.arange(40.0, 48.0)) and yb.dtype == torch.int64
    assert dls.decode_batch((xb, yb), max_n=2) == [(40.0, "even"), (41.0, "odd")]
    assert dls.c == 2 and type(dls.loss_func).__name__ == "CrossEntropyLossFlat"


def test_an_unseen_validation_label_is_named_unless_add_na(df):
    df.loc[45, "y"] = "prime"
    with pytest.raises(DataError, match=r"'prime' is not in the vocabulary(.|\n)*item 45"):
        number_block(splitter=ColSplitter()).dataloaders(df, bs=4, num_workers=0)  # found as the cache fills
    dls = number_block(splitter=ColSplitter()).dataloaders(df, bs=4, num_workers=0, cache=False)
    with pytest.raises(DataError, match="'prime' is not in the vocabulary"):
        list(dls.valid)  # found when the item is first read
    dblock = DataBlock(
        blocks=(RegressionBlock, CategoryBlock(add_na=True)),
        get_x=ColReader("x"),
        get_y=ColReader("y"),
        splitter=ColSplitter(),
    )
    dsets = dblock.datasets(df)
    assert dsets.vocab[0] == "#na#" and dsets.valid[5][1].item() == 0


def test_multicategory_targets_are_one_hot_floats(df):
    dblock = DataBlock(
        blocks=(RegressionBlock, MultiCategoryBlock),
        get_x=ColReader("x"),
        get_y=ColReader("tags", label_delim=" "),
        splitter=ColSplitter(),
    )
    dsets = dblock.datasets(df)
    assert dsets.vocab == ["a", "b"]
    assert torch.equal(dsets.train[0][1], torch.tensor([1.0, 1.0]))
    assert torch.equal(dsets.train[2][1], torch.tensor([0.0, 0.0]))  # empty string: no labels
    dls = dblock.dataloaders(df, bs=4, num_workers=0)
    assert type(dls.loss_func).__name__ == "BCEWithLogitsLossFlat"
    assert dls.decode_batch(dls.valid.one_batch(), 2) == [(40.0, ["b"]), (41.0, [])]


def test_already_encoded_multicategory_targets_pass_through():
    block = MultiCategoryBlock(encoded=True, vocab=["cat", "dog"])
    assert torch.equal(block.encode([0, 1]), torch.tensor([0.0, 1.0])) and block.decode([0, 1]) == ["dog"]


def test_a_string_target_for_a_regression_block_names_the_value(df):
    with pytest.raises(DataError, match="target 'even' is not a number"):
        number_block(("y", "x"), splitter=ColSplitter()).datasets(df.assign(x=df.y))


def test_a_missing_column_names_the_columns_there_are(df):
    with pytest.raises(DataError, match=r"no column 'label'.*'x', 'y'"):
        number_block(("x", "label")).datasets(df)


def test_a_label_function_that_raises_names_the_item():
    def label(o):
        if o == 7:
            raise KeyError("no label for 7")
        return "small" if o < 5 else "big"

    dblock = DataBlock(blocks=(RegressionBlock, CategoryBlock), get_y=label, splitter=IndexSplitter([]))
    with pytest.raises(DataError, match=r"item 7 \(7\) failed in label: KeyError"):
        dblock.datasets(list(range(10)))


def test_no_items_is_an_error_naming_the_source(tmp_path):
    with pytest.raises(DataError, match="no items found"):
        DataBlock(get_items=get_files).datasets(tmp_path)


def test_summary_walks_every_step_and_names_the_one_that_fails(df, capsys):
    number_block(splitter=ColSplitter()).summary(df)
    out = capsys.readouterr().out
    assert "RegressionBlock.encode" in out and "All steps passed" in out
    with pytest.raises(DataError):
        number_block(("y", "y")).summary(df)
    assert "FAILED at: split and set up blocks" in capsys.readouterr().out


def test_a_block_of_an_undeclared_kind_fails_naming_it_and_the_declared_ones(df):
    misspelt = TransformBlock(type_tfms=[float], kind="regresion")
    dblock = DataBlock(blocks=(misspelt, CategoryBlock), get_x=ColReader("x"), get_y=ColReader("y"))
    with pytest.raises(DataError, match=r"unknown kind 'regresion'.*'regression'.*register_kind"):
        dblock.dataloaders(df, bs=4, num_workers=0)


def test_an_application_declares_a_kind_once_and_its_transforms_read_it(monkeypatch):
    monkeypatch.setattr(transforms, "_KINDS", dict(transforms._KINDS))  # the kind is gone after the test
    text = register_kind("text", "a string")
    assert register_kind("text", "a string") == text == "text"  # again, the same: a module imported twice
    with pytest.raises(ValueError, match="'text' is already declared as 'a string'"):
        register_kind("text", "token ids")

    class Upper(Transform):
        def encodes(self, values, kinds, split_idx):
            return tuple(v.upper() if k == text else v for v, k in zip(values, kinds))

    assert Pipeline([Upper()], (text, CATEGORY), split_idx=0)(("hi", "hi")) == ("HI", "hi")


def test_a_target_that_draws_gets_two_panels_per_item_and_one_of_text_a_coloured_title(df):
    class Bar(RegressionBlock):  # an application's block: it draws its values rather than naming them
        draws = True

        def show(self, value, ax):
            ax.bar([0], [float(value)])

    dblock = DataBlock(blocks=(RegressionBlock, Bar), get_x=ColReader("x"), get_y=ColReader("x"))
    drawn = dblock.dataloaders(df, bs=4, num_workers=0)
    xb, yb = drawn.valid.one_batch()
    fig = drawn.show_results((xb, yb), yb + 1, max_n=3)
    assert [ax.get_title() for ax in fig.axes if ax.patches] == ["target", "prediction"] * 3
    text = number_block(splitter=ColSplitter()).dataloaders(df, bs=4, num_workers=0)
    xb, yb = text.valid.one_batch()  # rows 40, 41, 42: even, odd, even
    fig = text.show_results((xb, yb), 1 - yb, max_n=3)
    shown = fig.axes[:3]  # a 2 x 2 grid
    assert [ax.get_title() for ax in shown] == ["even\nodd", "odd\neven", "even\nodd"]
    assert {ax.title.get_color() for ax in shown} == {"red"}
    plt.close("all")


def test_test_dl_transforms_new_items_like_the_validation_set(df):
    dls = number_block(splitter=ColSplitter()).dataloaders(df, bs=4, num_workers=0)
    (xb,) = dls.test_dl([3.5, 7.0], with_getters=False).one_batch()
    assert torch.equal(xb, torch.tensor([3.5, 7.0]))
    xb, yb = dls.test_dl(df.iloc[:3].to_dict("records"), with_labels=True).one_batch()
    assert yb.tolist() == [0, 1, 0]


def test_random_splitter_is_reproducible_and_sized():
    tr, va = RandomSplitter(0.25, seed=1)(range(100))
    assert len(va) == 25 and sorted(tr + va) == list(range(100))
    assert RandomSplitter(0.25, seed=1)(range(100)) == (tr, va)
    assert RandomSplitter(0.25, seed=2)(range(100)) != (tr, va)
    with pytest.raises(DataError, match="valid_pct"):
        RandomSplitter(1.5)


def test_other_splitters(df, tmp_path):
    assert IndexSplitter([1, 3])(range(5)) == ([0, 2, 4], [1, 3])
    assert FuncSplitter(lambda o: o > 2)(range(5)) == ([0, 1, 2], [3, 4])
    assert ColSplitter()(df)[1] == list(range(40, 50))
    paths = ["d/train/a/1.png", "d/valid/a/2.png", "d/train/b/3.png", "d/test/b/4.png"]
    assert GrandparentSplitter()(paths) == ([0, 2], [1])
    with pytest.raises(DataError, match="lay files out"):
        GrandparentSplitter()(["d/x/a/1.png"])
    tr, va = TrainTestSplitter(test_size=0.3, random_state=0, stratify=[i % 2 for i in range(20)])(range(20))
    assert len(va) == 6 and sum(i % 2 for i in va) == 3


def test_get_files_filters_extensions_skips_hidden_and_limits_folders(tmp_path):
    for rel in ["a/1.png", "a/2.JPG", "a/.hidden.png", "b/3.png", "b/notes.txt", ".cache/4.png", "5.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    names = lambda fs: sorted(str(f.relative_to(tmp_path)) for f in fs)  # noqa: E731
    pictures = [".png", "jpg"]  # with or without the dot, in any case
    assert names(get_files(tmp_path, extensions=pictures)) == ["5.png", "a/1.png", "a/2.JPG", "b/3.png"]
    assert names(get_files(tmp_path, extensions=["txt"])) == ["b/notes.txt"]
    assert names(get_files(tmp_path, extensions=pictures, folders=["a"])) == ["a/1.png", "a/2.JPG"]
    assert names(get_files(tmp_path, extensions=pictures, recurse=False)) == ["5.png"]
    with pytest.raises(DataError, match="is not a folder"):
        get_files(tmp_path / "nope")


def test_labellers():
    assert parent_label("x/train/cat/1.jpg") == "cat"
    assert RegexLabeller(r"^(.+)_\d+\.jpg$")("pets/great_pyrenees_17.jpg") == "great_pyrenees"
    with pytest.raises(DataError, match="does not match 'dog.png'"):
        RegexLabeller(r"^(.+)_\d+\.jpg$")("dog.png")
    assert ColReader("f", pref="img/", suff=".png")({"f": "a"}) == "img/a.png"
    assert ColReader(["a", "b"])({"a": 1, "b": 2}) == [1, 2]

    class Item:
        name = "cat_3.jpg"

    assert using_attr(RegexLabeller(r"(.+)_\d"), "name")(Item()) == "cat"


def test_dls_loss_func_is_built_once_so_settings_on_it_stick(df):
    dblock = DataBlock(
        blocks=(RegressionBlock, MultiCategoryBlock),
        get_x=ColReader("x"),
        get_y=ColReader("tags", label_delim=" "),
        splitter=ColSplitter(),
    )
    dls = dblock.dataloaders(df, bs=4, num_workers=0)
    dls.loss_func.thresh = 0.3  # the course's way to move a multi-label threshold
    assert dls.loss_func is dls.loss_func and dls.loss_func.thresh == 0.3


def missing_labels_block(block=CategoryBlock, col="y") -> DataBlock:
    return DataBlock(
        blocks=(RegressionBlock, block), get_x=ColReader("x"), get_y=ColReader(col), splitter=ColSplitter()
    )


@pytest.mark.parametrize("missing", [None, float("nan"), pd.NA])
def test_missing_category_labels_become_na_with_one_warning_naming_column_count_and_row(df, missing):
    df = df.astype({"y": object})
    df.loc[[3, 8, 41], "y"] = missing
    with pytest.warns(MissingValuesWarning) as record:
        dsets = missing_labels_block().datasets(df.assign(is_valid=df.index >= 40))
    assert len(record) == 1
    msg = str(record[0].message)
    assert "'y'" in msg and "2 missing" in msg and "row 3" in msg and "'#na#'" in msg
    assert dsets.vocab == ["#na#", "even", "odd"]
    assert dsets.train[3][1].item() == 0 and dsets.train[4][1].item() == 1
    assert dsets.valid[1][1].item() == 0  # row 41, missing in validation too: the same category


def test_a_missing_label_only_in_validation_cannot_be_represented_and_says_what_to_do(df):
    df = df.astype({"y": object})
    df.loc[45, "y"] = None
    dblock = DataBlock(
        blocks=(RegressionBlock, CategoryBlock),
        get_x=ColReader("x"),
        get_y=ColReader("y"),
        splitter=ColSplitter(),
    )
    with pytest.raises(DataError, match=r"missing label(.|\n)*add_na=True(.|\n)*item 45"):
        dblock.datasets(df)[1][5]


def test_missing_labels_inside_multi_label_lists_become_na_with_one_warning(df):
    df = df.assign(tags=[["a", None] if i == 4 else ["b"] for i in range(50)])
    with pytest.warns(MissingValuesWarning, match=r"'tags'.*1 missing.*row 4"):
        dsets = missing_labels_block(MultiCategoryBlock, "tags").datasets(df.assign(is_valid=False))
    assert dsets.vocab == ["#na#", "a", "b"]
    assert torch.equal(dsets.train[4][1], torch.tensor([1.0, 1.0, 0.0]))


def test_summary_shows_a_batch_when_asked(tmp_path, capsys):
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    from ember.vision.all import ImageBlock, Resize, get_image_files

    for i in range(6):
        Image.fromarray(np.full((10, 10, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    dblock = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        get_y=lambda p: "even" if int(p.stem) % 2 == 0 else "odd",
        item_tfms=Resize(8),
    )
    plt.close("all")
    assert dblock.summary(tmp_path, bs=4) is None and not plt.get_fignums()
    fig = dblock.summary(tmp_path, bs=4, show_batch=True)
    assert len([ax for ax in fig.axes if ax.images]) == 4 and "Showing a batch" in capsys.readouterr().out
    plt.close("all")
