"""Image data from files: the factories, blocks, show_batch, predict, and errors naming the file."""

from __future__ import annotations

import re
import string

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ember.vision.all import (
    CategoryBlock,
    DataBlock,
    DataError,
    ImageBlock,
    ImageDataLoaders,
    Learner,
    MaskBlock,
    MultiCategoryBlock,
    PointBlock,
    RandomSplitter,
    Resize,
    SegmentationDataLoaders,
    aug_transforms,
    error_rate,
    get_image_files,
    parent_label,
)


def write_image(path, color: int, size=(24, 20), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.full((size[1], size[0], 3), color, dtype=np.uint8)
    a += np.random.default_rng(color).integers(0, 20, a.shape, dtype=np.uint8)
    Image.fromarray(a).convert(mode).save(path)


@pytest.fixture
def pets(tmp_path):
    """Pets-style names: upper-case first letter for cats, as in the course's first lesson."""
    for i in range(24):
        name = f"{'Bengal' if i % 2 else 'beagle'}_{i}.png"
        write_image(tmp_path / "images" / name, 200 if i % 2 else 30)
    return tmp_path / "images"


@pytest.fixture
def folders(tmp_path):
    for split in ("train", "valid"):
        for label, color in (("bear", 40), ("teddy", 220)):
            for i in range(6):
                write_image(tmp_path / split / label / f"{i}.png", color)
    return tmp_path


def test_from_name_func_with_a_lambda_labels_by_file_name(pets):
    dls = ImageDataLoaders.from_name_func(
        pets,
        get_image_files(pets),
        lambda x: x[0].isupper(),
        valid_pct=0.25,
        seed=0,
        item_tfms=Resize(16),
        bs=4,
        num_workers=0,
    )
    assert dls.vocab == [False, True] and len(dls.valid_ds) == 6
    img, label = dls.train_ds[0]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and label.dtype == torch.int64
    xb, yb = dls.one_batch()
    assert xb.shape == (4, 3, 16, 16) and xb.dtype == torch.float32 and xb.min() >= 0 and xb.max() <= 1


def test_from_name_re_and_from_path_func(pets):
    fnames = get_image_files(pets)
    dls = ImageDataLoaders.from_name_re(
        pets, fnames, r"^([a-zA-Z]+)_\d+\.png$", item_tfms=Resize(8), num_workers=0
    )
    assert dls.vocab == ["Bengal", "beagle"]
    dls = ImageDataLoaders.from_path_func(
        pets, fnames, lambda p: p.stem.split("_")[0].lower(), num_workers=0, item_tfms=Resize(8)
    )
    assert dls.vocab == ["beagle", "bengal"]


def test_from_folder_uses_train_and_valid_folders_or_a_random_split(folders):
    dls = ImageDataLoaders.from_folder(folders, item_tfms=Resize(8), bs=4, num_workers=0)
    assert dls.vocab == ["bear", "teddy"] and len(dls.train_ds) == 12 and len(dls.valid_ds) == 12
    dls = ImageDataLoaders.from_folder(
        folders / "train", valid_pct=0.5, seed=1, item_tfms=Resize(8), num_workers=0
    )
    assert len(dls.train_ds) == 6 and len(dls.valid_ds) == 6


def test_from_df_single_and_multi_label_and_from_csv(pets):
    fnames = sorted(p.name for p in pets.iterdir())
    df = pd.DataFrame({"fname": fnames, "labels": ["cat furry" if f[0].isupper() else "dog" for f in fnames]})
    dls = ImageDataLoaders.from_df(df, pets, label_delim=" ", item_tfms=Resize(8), num_workers=0, seed=0)
    assert dls.vocab == ["cat", "dog", "furry"]
    _, yb = dls.one_batch()
    assert yb.dtype == torch.float32 and yb.shape[1] == 3
    assert type(dls.loss_func).__name__ == "BCEWithLogitsLossFlat"
    df.to_csv(pets / "labels.csv", index=False)
    dls = ImageDataLoaders.from_csv(pets, item_tfms=Resize(8), num_workers=0)
    assert dls.vocab == ["cat furry", "dog"]
    with pytest.raises(DataError, match=r"no column 'label'.*'fname', 'labels'"):
        ImageDataLoaders.from_df(df, pets, label_col="label")


def test_from_lists(pets):
    fnames = get_image_files(pets)
    dls = ImageDataLoaders.from_lists(
        pets, fnames, ["a" if i % 3 else "b" for i in range(len(fnames))], item_tfms=Resize(8), num_workers=0
    )
    assert dls.vocab == ["a", "b"]
    with pytest.raises(DataError, match="24 files but 2 labels"):
        ImageDataLoaders.from_lists(pets, fnames, ["a", "b"])


def test_segmentation_masks_stay_class_indices_and_get_a_per_pixel_loss(tmp_path):
    for i in range(8):
        img = np.zeros((20, 20), np.uint8)
        img[:, : 5 + i] = 1
        Image.fromarray(img * 200).convert("RGB").save(tmp_path / f"{i}.png")
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(img).save(tmp_path / "masks" / f"{i}.png")
    fnames = sorted(tmp_path.glob("*.png"))
    dls = SegmentationDataLoaders.from_label_func(
        tmp_path,
        fnames,
        lambda p: p.parent / "masks" / p.name,
        codes=["bg", "thing"],
        item_tfms=Resize(16),
        batch_tfms=aug_transforms(),
        bs=4,
        num_workers=0,
    )
    xb, yb = dls.one_batch()
    assert yb.shape == (4, 16, 16) and yb.dtype == torch.int64 and set(yb.unique().tolist()) <= {0, 1}
    assert type(dls.loss_func).__name__ == "CrossEntropyLossFlat" and dls.loss_func.axis == 1 and dls.c == 2


def test_the_image_blocks_describe_draw_and_size_their_pil_values_for_the_data_core(pets, capsys):
    dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label)
    dblock.summary(pets, bs=2)
    out = capsys.readouterr().out
    assert "ImageBlock.encode\n    -> PIL image mode=RGB size=24x20" in out  # the block's words, not a repr
    assert "-> tuple(Tensor shape=(3, 20, 24) dtype=torch.uint8, " in out  # after ToTensor
    img = Image.new("L", (24, 20))
    assert ImageBlock().nbytes(img) == 24 * 20 and MaskBlock().nbytes(Image.new("RGB", (4, 5))) == 4 * 5 * 3
    assert ImageBlock().nbytes(torch.zeros(3, 20, 24, dtype=torch.uint8)) == 3 * 20 * 24
    assert ImageBlock.draws and MaskBlock.draws and PointBlock.draws and not CategoryBlock.draws


def test_points_are_scaled_to_minus_one_one(tmp_path):
    for i in range(8):
        write_image(tmp_path / f"{i}.png", 100, size=(40, 20))
    pts = {f"{i}.png": [[10.0, 5.0], [30.0, 15.0]] for i in range(8)}
    dblock = DataBlock(
        blocks=(ImageBlock, PointBlock),
        get_items=get_image_files,
        get_y=lambda p: pts[p.name],
        splitter=RandomSplitter(seed=0),
    )
    dls = dblock.dataloaders(tmp_path, bs=2, num_workers=0)
    _, yb = dls.valid.one_batch()
    assert torch.allclose(yb[0], torch.tensor([[-0.5, -0.5], [0.5, 0.5]]))
    assert dls.c == 4 and type(dls.loss_func).__name__ == "MSELossFlat"


@pytest.mark.parametrize("kind", ["category", "multi", "points", "mask"])
def test_show_batch_draws_every_block_kind(tmp_path, kind):
    import matplotlib.pyplot as plt

    for i in range(6):
        write_image(tmp_path / f"{i}.png", 40 * i)
        Image.fromarray(np.eye(24, 24, dtype=np.uint8)[:20]).save(tmp_path / f"m{i}.gif")
    y = {
        "category": (CategoryBlock, lambda p: "even" if int(p.stem) % 2 == 0 else "odd"),
        "multi": (MultiCategoryBlock, lambda p: ["x", "y"] if int(p.stem) % 2 else ["x"]),
        "points": (PointBlock, lambda p: [[3.0, 4.0]]),
        "mask": (MaskBlock(["bg", "line"]), lambda p: p.parent / f"m{p.stem}.gif"),
    }[kind]
    dblock = DataBlock(
        blocks=(ImageBlock, y[0]),
        get_items=lambda d: sorted(d.glob("[0-9].png")),
        get_y=y[1],
        item_tfms=Resize(16),
        batch_tfms=aug_transforms(),
    )
    dls = dblock.dataloaders(tmp_path, bs=4, num_workers=0)
    fig = dls.show_batch(max_n=4)
    fig.savefig(tmp_path / "batch.png")
    assert len([ax for ax in fig.axes if ax.images]) == 4
    assert (tmp_path / "batch.png").stat().st_size > 2000
    plt.close("all")


def test_predict_takes_a_path_a_pil_image_or_an_array_in_any_mode(pets):
    fnames = get_image_files(pets)
    dls = ImageDataLoaders.from_name_func(
        pets, fnames, lambda x: x[0].isupper(), item_tfms=Resize(16), bs=4, num_workers=0
    )
    learn = Learner(
        dls,
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2)),
        metrics=error_rate,
        quiet=True,
    )
    learn.fit(3, 1e-2)
    cat = fnames[[p.name[0].isupper() for p in fnames].index(True)]
    img = Image.open(cat)
    for item in (
        cat,
        str(cat),
        img,
        img.convert("L"),
        img.convert("RGBA"),
        np.asarray(img),
        img.resize((50, 7)),
    ):
        label, idx, probs = learn.predict(item)
        assert label is True and idx.item() == 1 and probs.shape == (2,)


def test_a_corrupt_image_is_named_when_loading_and_when_training(pets):
    (pets / "Broken_99.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    fnames = get_image_files(pets)
    with pytest.raises(DataError, match="Broken_99.png"):  # found while filling the cache
        ImageDataLoaders.from_name_func(pets, fnames, lambda x: x[0].isupper(), item_tfms=Resize(8), seed=0)
    dls = ImageDataLoaders.from_name_func(
        pets, fnames, lambda x: x[0].isupper(), item_tfms=Resize(8), seed=0, cache=False, num_workers=2, bs=4
    )
    learn = Learner(dls, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2)), quiet=True)
    with pytest.raises(DataError, match="Broken_99.png") as info:
        learn.fit(1)
    assert "one pass" not in str(info.value)


def test_a_folder_without_images_says_so(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="no items found"):
        ImageDataLoaders.from_folder(tmp_path, valid_pct=0.2)


_label = st.text(alphabet=string.ascii_letters + string.digits + " _-.", min_size=1, max_size=12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    layout=st.lists(st.tuples(_label, st.integers(0, 3), st.booleans()), min_size=0, max_size=8),
    depth=st.integers(1, 2),
)
def test_random_folder_layouts_load_or_raise_a_documented_error(tmp_path_factory, layout, depth):
    root = tmp_path_factory.mktemp("layout")
    for k, (label, n, corrupt) in enumerate(layout):
        folder = root / ("x/" * (depth - 1)) / label.strip(". ") if label.strip(". ") else root / f"l{k}"
        for i in range(n):
            f = folder / f"{k}_{i}.png"
            if corrupt and i == 0:
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(b"garbage")
            else:
                write_image(f, 10 * i)
    files = get_image_files(root)
    load = lambda: ImageDataLoaders.from_folder(  # noqa: E731
        root, valid_pct=0.3, seed=0, item_tfms=Resize(8), bs=2, num_workers=0
    )
    # What the layout must give, worked out independently: the same seeded split, the labels it leaves.
    train, valid = RandomSplitter(0.3, seed=0)(files)
    corrupt = [f for f in files if f.read_bytes() == b"garbage"]
    unseen = {parent_label(files[i]) for i in valid} - {parent_label(files[i]) for i in train}
    if not files:
        problems = ["no items found"]
    elif not train:
        problems = ["the splitter left no training items"]
    else:  # both can hold; whichever item is read first is reported, a corrupt file by its name
        problems = [re.escape(str(f)) for f in corrupt] + ["is not in the vocabulary"] * bool(unseen)
    if problems:
        with pytest.raises(DataError, match="|".join(problems)):
            load()
        return
    dls = load()  # a valid layout must load: no DataError is excused
    assert dls.vocab == sorted({parent_label(files[i]) for i in train})
    assert sum(len(yb) for _, yb in dls.valid) == len(valid)
    assert sum(len(yb) for _, yb in dls.train) == (len(train) // 2 * 2 if len(train) > 2 else len(train))


def test_from_name_func_takes_a_label_function_written_for_the_name_or_for_the_path(pets):
    def is_cat_name(x):  # the book: the file name, a str
        return x[0].isupper()

    def is_cat(item):  # the course notes: the path
        return item.name[0].isupper()

    for label_func in (is_cat_name, is_cat, lambda p: p.stem[0].isupper() and p.parent.name == "images"):
        dls = ImageDataLoaders.from_name_func(
            pets, get_image_files(pets), label_func=label_func, valid_pct=0.25, seed=0, item_tfms=Resize(8)
        )
        assert dls.vocab == [False, True]
        labels = [dls.vocab[y.item()] for _, y in dls.train_ds]
        names = [p.name for p in dls.datasets.train.items]
        assert labels == [n[0].isupper() for n in names]


def test_a_label_function_that_fails_on_the_name_and_the_path_names_the_item(pets):
    def broken(x):
        return x.suffixes_of_the_label  # neither a str nor a Path has this

    with pytest.raises(DataError, match=r"_\d+\.png(.|\n)*broken(.|\n)*the name(.|\n)*the path"):
        ImageDataLoaders.from_name_func(pets, get_image_files(pets), broken, item_tfms=Resize(8))
