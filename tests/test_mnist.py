"""The MNIST data layer: IDX files, the standard files, offline downloads, the bundled slice."""

import gzip
import hashlib
import inspect
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from spikefab.firmware import mnist
from spikefab.firmware.mnist import (DataError, MNISTSet, bundled_slice, download_mnist,
                                     load_idx, load_mnist, make_slice, write_idx)

SHARED = Path("/work/shared/data/mnist")


def fake_split(folder, prefix, n, *, gz=True, seed=0, labels=None):
    """Write a tiny split of random 28x28 images in the standard layout; return (images, labels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8) if labels is None else labels
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


# -- IDX --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, compress", [
    ("a.idx", None), ("a.idx.gz", None),
    ("gz-without-suffix", True),  # gzip found by its magic bytes, not by the name
    ("plain.gz", False),          # and a plain file named .gz is read as plain
])
@pytest.mark.parametrize("shape", [(5,), (3, 28, 28), (2, 3, 4, 5), (0, 28, 28)])
def test_idx_round_trip(tmp_path, name, compress, shape):
    array = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    path = write_idx(tmp_path / name, array, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (compress or (compress is None
                                                                  and name.endswith(".gz")))
    back = load_idx(path)
    assert back.dtype == np.uint8 and back.shape == shape
    np.testing.assert_array_equal(back, array)
    back[...] = 0  # a writable copy, not a view of the file's bytes


def test_idx_header_layout(tmp_path):
    path = write_idx(tmp_path / "a", np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert path.read_bytes() == bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 1, 2, 3, 4, 5])


def test_gz_is_reproducible(tmp_path):
    array = np.arange(200, dtype=np.uint8)
    first = write_idx(tmp_path / "a.gz", array).read_bytes()
    assert write_idx(tmp_path / "b.gz", array).read_bytes() == first
    assert first[4:8] == b"\0\0\0\0"  # gzip mtime field


@pytest.mark.parametrize("raw, message", [
    (b"", "truncated IDX file: 0 bytes"),
    (b"\0\0\x08", "truncated IDX file: 3 bytes"),
    (b"\x50\x4b\x03\x04rest", "bad magic 50 4b 03 04: not an IDX file"),
    (bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"\0" * 4, "wrong element type 0x0D (float32)"),
    (bytes([0, 0, 0x08, 0]), "declares 0 dimensions"),
    (bytes([0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0]), "truncated IDX file: the header declares 3"),
    (bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2]),
     "truncated IDX file: the header declares 2x3 = 6 bytes of data but only 2 follow"),
    (bytes([0, 0, 0x08, 1, 0, 0, 0, 2, 1, 2, 3]), "1 bytes after the 2 = 2 bytes of data"),
])
@pytest.mark.parametrize("gz", [False, True])
def test_malformed_idx(tmp_path, raw, message, gz):
    path = tmp_path / "bad"
    path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    with pytest.raises(DataError, match="bad: ") as info:
        load_idx(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_truncated_gzip(tmp_path):
    whole = write_idx(tmp_path / "a.gz", np.zeros((100, 28, 28), dtype=np.uint8)).read_bytes()
    (tmp_path / "cut.gz").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(DataError, match="cut.gz: truncated gzip file"):
        load_idx(tmp_path / "cut.gz")
    (tmp_path / "junk.gz").write_bytes(b"\x1f\x8b" + b"\xff" * 40)
    with pytest.raises(DataError, match="junk.gz: corrupt gzip file"):
        load_idx(tmp_path / "junk.gz")


def test_missing_idx_file(tmp_path):
    with pytest.raises(DataError, match="nothing: no such file"):
        load_idx(tmp_path / "nothing")
    assert issubclass(DataError, ValueError)  # the CLI prints ValueErrors without a traceback


def test_write_idx_refuses_non_bytes(tmp_path):
    with pytest.raises(ValueError, match=r"integers in \[0, 255\]"):
        write_idx(tmp_path / "a", np.array([0, 256]))
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "a", np.uint8(3))
    assert list(tmp_path.iterdir()) == []


# -- the standard files -----------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("split, prefix", [("test", "t10k"), ("train", "train")])
def test_load_mnist(tmp_path, gz, split, prefix):
    images, labels = fake_split(tmp_path, prefix, 7, gz=gz)
    data = load_mnist(tmp_path, split)
    assert isinstance(data, MNISTSet) and len(data) == 7 and data.name == f"mnist-{split}"
    assert data.images.shape == (7, 784) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images, images.reshape(7, 784))  # row-major
    np.testing.assert_array_equal(data.images_2d(), images)
    np.testing.assert_array_equal(data.labels, labels)
    np.testing.assert_array_equal(data.indices, np.arange(7))
    assert f"{prefix}-images-idx3-ubyte" in data.source


def test_load_mnist_mixed_plain_and_gz(tmp_path):
    images, labels = fake_split(tmp_path, "t10k", 4, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    data = load_mnist(tmp_path)
    np.testing.assert_array_equal(data.labels, labels)
    np.testing.assert_array_equal(data.images_2d(), images)


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path / "nowhere")
    assert "does not exist" in str(info.value)
    assert "point --data at a folder with the standard MNIST files" in str(info.value)
    fake_split(tmp_path, "train", 3)  # the other split does not count
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path, "test")
    text = str(info.value)
    assert "looked for t10k-images-idx3-ubyte or t10k-images-idx3-ubyte.gz" in text
    assert "t10k-labels" not in text  # that one is there
    assert "omit --data to use the bundled slice" in text
    with pytest.raises(ValueError, match="split must be one of"):
        load_mnist(tmp_path, "validation")


def test_count_mismatch(tmp_path):
    fake_split(tmp_path, "t10k", 5)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataError, match="count mismatch: .* holds 5 images but .* 4 labels"):
        load_mnist(tmp_path)


def test_labels_out_of_range(tmp_path):
    fake_split(tmp_path, "t10k", 4, labels=np.array([1, 2, 10, 3], dtype=np.uint8))
    with pytest.raises(DataError, match=r"labels-idx1-ubyte.gz: label 10 at index 2 is out "
                                        r"of range; MNIST labels are digits 0..9"):
        load_mnist(tmp_path)


def test_wrong_image_size_and_swapped_files(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((2, 32, 32), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(2, dtype=np.uint8))
    with pytest.raises(DataError, match="images are 32x32 pixels; MNIST images are 28x28"):
        load_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros(2, dtype=np.uint8))
    with pytest.raises(DataError, match="swapped"):
        load_mnist(tmp_path)


def test_empty_split(tmp_path):
    fake_split(tmp_path, "t10k", 0)
    with pytest.raises(DataError, match="holds no images"):
        load_mnist(tmp_path)


def test_mnist_set_checks_its_arrays():
    with pytest.raises(ValueError, match=r"images must be uint8 of shape \(2, 784\)"):
        MNISTSet(np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.uint8), np.arange(2), "x", "y")
    with pytest.raises(ValueError, match="labels must be uint8"):
        MNISTSet(np.zeros((2, 784), np.uint8), np.zeros(2, np.int64), np.arange(2), "x", "y")


# -- downloads, offline -----------------------------------------------------------------------

@pytest.fixture
def fake_mirror(monkeypatch):
    """Replace the fetcher with a dictionary of URL -> bytes and the checksums with theirs."""
    served, fetched = {}, []
    bodies = {name: f"fake {name}".encode() for name in mnist.MD5}
    monkeypatch.setattr(mnist, "MD5", {name: hashlib.md5(body).hexdigest()
                                       for name, body in bodies.items()})

    def fetch(url, timeout=60.0):
        fetched.append(url)
        if url not in served:
            raise urllib.error.URLError("unreachable (test)")
        return served[url]

    monkeypatch.setattr(mnist, "_fetch", fetch)
    return served, fetched, bodies


def test_download_fetches_verifies_and_skips(tmp_path, fake_mirror):
    served, fetched, bodies = fake_mirror
    second = mnist.MIRRORS[1]
    for name, body in bodies.items():
        served[mnist.MIRRORS[0] + name] = b"corrupted " + body  # first mirror serves junk
        served[second + name] = body
    lines = []
    paths = download_mnist(tmp_path / "mnist", splits=("test",), log=lines.append)
    assert [p.name for p in paths] == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert all(p.read_bytes() == bodies[p.name] for p in paths)
    assert len(fetched) == 4 and all("fetched from " + second in line for line in lines)
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == [p.name for p in paths]

    # Present with the right checksum: not fetched again.
    fetched.clear()
    assert download_mnist(tmp_path / "mnist", splits=("test",)) == paths
    assert fetched == []

    # Present with the wrong checksum: replaced.
    paths[0].write_bytes(b"stale")
    download_mnist(tmp_path / "mnist", splits=("test",))
    assert fetched == [mnist.MIRRORS[0] + paths[0].name, second + paths[0].name]
    assert paths[0].read_bytes() == bodies[paths[0].name]


def test_download_checksum_mismatch_leaves_nothing(tmp_path, fake_mirror):
    served = fake_mirror[0]
    for mirror in mnist.MIRRORS:
        served[mirror + "train-images-idx3-ubyte.gz"] = b"not the file"
    with pytest.raises(DataError) as info:
        download_mnist(tmp_path, splits=("train",))
    text = str(info.value)
    assert "could not fetch train-images-idx3-ubyte.gz with the right checksum" in text
    assert text.count("checksum mismatch (MD5 " + hashlib.md5(b"not the file").hexdigest()) == 2
    assert "omit --data to use the bundled slice" in text
    assert list(tmp_path.iterdir()) == []  # no partial or temporary file


def test_download_unreachable(tmp_path, fake_mirror):
    with pytest.raises(DataError, match="unreachable"):
        download_mnist(tmp_path, splits=("test",), mirrors=["https://example.invalid/"])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="splits must be among"):
        download_mnist(tmp_path, splits=("t10k",))


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args):
        raise OSError("disk full (test)")

    monkeypatch.setattr(mnist.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_idx(tmp_path / "a.gz", np.zeros(3, dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_standard_checksums():
    # From torchvision (pytorch/vision, torchvision/datasets/mnist.py, MNIST.resources).
    assert mnist.MD5 == {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }


# -- the bundled slice ------------------------------------------------------------------------

def test_bundled_slice():
    data = bundled_slice()
    assert len(data) == 1000 and data.name == "mnist-slice"
    assert data.images.shape == (1000, 784) and data.images.dtype == np.uint8
    assert data.labels.shape == (1000,) and data.labels.dtype == np.uint8
    assert data.labels.max() <= 9 and set(np.unique(data.labels)) == set(range(10))
    np.testing.assert_array_equal(data.indices, np.arange(59000, 60000))
    assert 0 < data.images.mean() < 128 and data.images.max() == 255  # digits, not noise
    assert "59000-59999" in data.source


def test_bundled_slice_is_small():
    folder = Path(mnist.__file__).parent / "data" / "mnist-slice"
    assert sum(p.stat().st_size for p in folder.iterdir()) < 1_000_000
    assert "59000-59999" in (folder / "README.md").read_text()


@pytest.mark.skipif(not (SHARED / "train-images-idx3-ubyte.gz").is_file(),
                    reason=f"no MNIST training files in {SHARED}")
def test_bundled_slice_matches_the_training_file():
    train = load_mnist(SHARED, "train")
    data = bundled_slice()
    np.testing.assert_array_equal(data.images, train.images[59000:60000])
    np.testing.assert_array_equal(data.labels, train.labels[59000:60000])
    np.testing.assert_array_equal(data.indices, train.indices[59000:60000])


def test_make_slice(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    images, labels = fake_split(source, "train", 20, gz=False)
    out = tmp_path / "out"
    made = make_slice(source, out, start=15, count=5)
    np.testing.assert_array_equal(made.indices, np.arange(15, 20))
    np.testing.assert_array_equal(made.images, images[15:].reshape(5, 784))
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(first) == sorted(mnist.SLICE_FILES)
    assert all(body[:2] == b"\x1f\x8b" for body in first.values())
    np.testing.assert_array_equal(load_idx(out / mnist.SLICE_FILES[0]), images[15:])
    np.testing.assert_array_equal(load_idx(out / mnist.SLICE_FILES[1]), labels[15:])
    make_slice(source, out, start=15, count=5)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # reproducible bytes
    with pytest.raises(ValueError, match="runs past the end of the training file, which "
                                         "holds 20 images"):
        make_slice(source, out, start=16, count=5)
    with pytest.raises(ValueError, match="count must be an integer >= 1"):
        make_slice(source, out, count=0)


def test_make_slice_defaults_are_the_bundled_slice():
    defaults = inspect.signature(make_slice).parameters
    assert (defaults["start"].default, defaults["count"].default) == (59000, 1000)
