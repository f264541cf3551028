"""MNIST data: reading and writing IDX files, the standard MNIST files, and the bundled slice.

The four standard files (``train-``/``t10k-`` ``images-idx3-ubyte`` and ``labels-idx1-ubyte``)
are read either plain or gzip-compressed; compression is recognised by the gzip magic bytes, not
by the file name. Images come back flattened to ``(n, 784)`` in row-major order, which is the
pixel order :func:`spikefab.sim.encoding.rate_encode` uses.

The repository ships a small slice of MNIST in ``firmware/data/mnist-slice/`` so that the
project runs without downloading anything: the last 1000 images of the *training* file
(indices 59000-59999). A trainer must hold these out (they belong to its validation split),
otherwise accuracy measured on the slice is accuracy on training data. :func:`make_slice`
regenerates the slice from the standard files.

IDX format (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code (``0x08`` =
unsigned byte), the number of dimensions ``d``, then ``d`` big-endian 32-bit sizes, then the
elements in row-major order.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = [
    "DataError",
    "MNISTSet",
    "MIRRORS",
    "MD5",
    "SLICE_START",
    "SLICE_COUNT",
    "SLICE_FILES",
    "load_idx",
    "write_idx",
    "load_mnist",
    "download_mnist",
    "bundled_slice",
    "make_slice",
]


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file and what is wrong."""


#: Side length of an MNIST image; images are ``ROWS x ROWS`` pixels.
ROWS = 28
PIXELS = ROWS * ROWS

_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE = 0x08
_TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
               0x0D: "float32", 0x0E: "float64"}

#: File-name prefix of each split in the standard distribution.
_PREFIX = {"train": "train", "test": "t10k"}

#: Mirrors of the standard files, tried in order. The first is the one torchvision uses
#: (pytorch/vision, torchvision/datasets/mnist.py); the second is the CVDF mirror that the
#: TensorFlow and JAX examples use.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

#: MD5 of each standard (gzip) file, as listed in ``MNIST.resources`` of torchvision
#: (pytorch/vision, torchvision/datasets/mnist.py). The two training files were also checked
#: against the copies in /work/shared/data/mnist when this was written.
MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

#: The bundled slice: training-file images ``SLICE_START .. SLICE_START + SLICE_COUNT - 1``.
SLICE_START = 59000
SLICE_COUNT = 1000
#: File names of the bundled slice (images, labels), in ``firmware/data/mnist-slice/``.
SLICE_FILES = ("slice-images-idx3-ubyte.gz", "slice-labels-idx1-ubyte.gz")

_HINT = "point --data at a folder with the standard MNIST files, or omit --data to use the " \
        "bundled slice"


@dataclass(frozen=True, eq=False)
class MNISTSet:
    """A set of MNIST images with their labels.

    Attributes
    ----------
    images : ndarray of uint8, shape ``(n, 784)``
        One image per row, its 28x28 pixels flattened in row-major order; 0 is background.
    labels : ndarray of uint8, shape ``(n,)``
        The digit of each image, 0..9.
    indices : ndarray of int64, shape ``(n,)``
        The index of each image in the file it was read from (the key of its spike train in
        :func:`~spikefab.sim.encoding.rate_encode`).
    name : str
        Short name: ``"mnist-train"``, ``"mnist-test"`` or ``"mnist-slice"``.
    source : str
        Where the images came from (the files read), for reports.
    """

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    name: str
    source: str

    def __post_init__(self):
        n = len(self.labels)
        if self.images.dtype != np.uint8 or self.images.shape != (n, PIXELS):
            raise ValueError(f"images must be uint8 of shape ({n}, {PIXELS}), "
                             f"not {self.images.dtype} {self.images.shape}")
        if self.labels.dtype != np.uint8 or self.labels.shape != (n,):
            raise ValueError(f"labels must be uint8 of shape ({n},), "
                             f"not {self.labels.dtype} {self.labels.shape}")
        if self.indices.shape != (n,) or not np.issubdtype(self.indices.dtype, np.integer):
            raise ValueError(f"indices must be integers of shape ({n},), "
                             f"not {self.indices.dtype} {self.indices.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    def images_2d(self) -> np.ndarray:
        """The images as ``(n, 28, 28)`` (a view, not a copy)."""
        return self.images.reshape(-1, ROWS, ROWS)


# -- IDX files --------------------------------------------------------------------------------

def _read_bytes(path: Path) -> bytes:
    """The contents of ``path``, gunzipped if it starts with the gzip magic bytes."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an IDX file") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise DataError(f"{path}: truncated gzip file (the compressed stream ends early); "
                        "the file is incomplete, fetch it again") from None
    except (OSError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip file ({exc}); fetch it again") from None


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file of unsigned bytes, plain or gzip-compressed.

    Parameters
    ----------
    path : str or path-like
        The file. Gzip compression is detected from the content (magic bytes ``1f 8b``), so the
        name need not end in ``.gz``.

    Returns
    -------
    ndarray of uint8
        Shaped as the dimension sizes in the file's header.

    Raises
    ------
    DataError
        If the file is missing, is not an IDX file (bad magic), holds elements other than
        unsigned bytes, is truncated, or has bytes after the declared data.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: truncated IDX file: {len(data)} bytes, shorter than the "
                        "4-byte magic number")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: bad magic {data[:4].hex(' ')}: not an IDX file (an IDX file "
                        "starts with two zero bytes, a type code and the number of dimensions)")
    type_code, ndim = data[2], data[3]
    if type_code != _UBYTE:
        kind = _TYPE_NAMES.get(type_code, "unknown type")
        raise DataError(f"{path}: wrong element type 0x{type_code:02X} ({kind}); MNIST files "
                        f"hold unsigned bytes (type 0x{_UBYTE:02X})")
    if ndim == 0:
        raise DataError(f"{path}: bad magic {data[:4].hex(' ')}: the IDX header declares "
                        "0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX file: the header declares {ndim} dimensions "
                        f"({header} header bytes) but the file has {len(data)} bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    size = int(np.prod(shape, dtype=object))
    dims = "x".join(map(str, shape))
    if len(data) - header < size:
        raise DataError(f"{path}: truncated IDX file: the header declares {dims} = {size} "
                        f"bytes of data but only {len(data) - header} follow; the file is "
                        "incomplete, fetch it again")
    if len(data) - header > size:
        raise DataError(f"{path}: malformed IDX file: {len(data) - header - size} bytes after "
                        f"the {dims} = {size} bytes of data the header declares")
    return np.frombuffer(data, dtype=np.uint8, count=size, offset=header).reshape(shape).copy()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so
    that ``path`` is either absent, the old file, or complete -- never half written."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private (0600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write an array of unsigned bytes as an IDX file (atomically).

    Parameters
    ----------
    path : str or path-like
        The file to write; its folder must exist.
    array : array of integers in [0, 255]
        At least one dimension; written in row-major order.
    compress : bool, optional
        Gzip the file. Defaults to whether ``path`` ends in ``.gz``. The gzip header carries
        no time stamp or file name (``mtime=0``), so the same array gives the same bytes.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.ndim < 1 or array.ndim > 255:
        raise ValueError(f"an IDX file holds 1 to 255 dimensions, not {array.ndim}")
    if array.size and (not np.issubdtype(array.dtype, np.integer)
                       or array.min() < 0 or array.max() > 255):
        raise ValueError("write_idx writes unsigned bytes: the array must hold integers "
                         "in [0, 255]")
    if any(n >= 2 ** 32 for n in array.shape):
        raise ValueError(f"IDX dimension sizes must be below 2**32, not {array.shape}")
    data = (bytes([0, 0, _UBYTE, array.ndim])
            + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
            + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    if compress is None:
        compress = path.name.endswith(".gz")
    if compress:
        data = gzip.compress(data, compresslevel=9, mtime=0)
    _write_atomic(path, data)
    return path


# -- the standard files -----------------------------------------------------------------------

def _find(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` or ``folder/stem.gz``, whichever exists (plain first), else None."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _as_set(images: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path,
            first_index: int, name: str) -> MNISTSet:
    """Check a pair of image and label arrays and make them an :class:`MNISTSet`."""
    if images.ndim != 3:
        raise DataError(f"{image_path}: holds a {images.ndim}-dimensional array; an MNIST "
                        "image file has 3 dimensions (count x 28 x 28) -- are the image and "
                        "label files swapped?")
    if images.shape[1:] != (ROWS, ROWS):
        raise DataError(f"{image_path}: images are {images.shape[1]}x{images.shape[2]} "
                        f"pixels; MNIST images are {ROWS}x{ROWS}")
    if labels.ndim != 1:
        raise DataError(f"{label_path}: holds a {labels.ndim}-dimensional array; an MNIST "
                        "label file has 1 dimension (count) -- are the image and label files "
                        "swapped?")
    if len(images) != len(labels):
        raise DataError(f"count mismatch: {image_path} holds {len(images)} images but "
                        f"{label_path} holds {len(labels)} labels; the two files must come "
                        "from the same split")
    if len(images) == 0:
        raise DataError(f"{image_path}: holds no images")
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DataError(f"{label_path}: label {int(labels[bad])} at index {bad} is out of "
                        "range; MNIST labels are digits 0..9 -- is this an MNIST label file?")
    return MNISTSet(images=images.reshape(len(images), PIXELS), labels=labels,
                    indices=np.arange(first_index, first_index + len(images), dtype=np.int64),
                    name=name, source=f"{image_path}, {label_path}")


def load_mnist(folder: str | os.PathLike, split: str = "test") -> MNISTSet:
    """Read one split of MNIST from a folder with the standard files.

    Parameters
    ----------
    folder : str or path-like
        Holds ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (split ``"test"``) or
        ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (split ``"train"``), each
        plain or with ``.gz`` appended (plain is read if both exist).
    split : {"test", "train"}
        Which split.

    Returns
    -------
    MNISTSet
        ``indices`` are the positions in the files, ``0 .. n-1``.

    Raises
    ------
    DataError
        If a file is missing or malformed, the counts disagree, a label is not 0..9, or the
        images are not 28x28.
    """
    if split not in _PREFIX:
        raise ValueError(f"split must be one of {sorted(_PREFIX)}, not {split!r}")
    folder = Path(folder)
    stems = [f"{_PREFIX[split]}-images-idx3-ubyte", f"{_PREFIX[split]}-labels-idx1-ubyte"]
    if not folder.is_dir():
        raise DataError(f"MNIST folder {folder} does not exist or is not a folder; {_HINT}")
    found = [_find(folder, stem) for stem in stems]
    missing = [stem for stem, path in zip(stems, found, strict=True) if path is None]
    if missing:
        wanted = ", ".join(f"{stem} or {stem}.gz" for stem in missing)
        raise DataError(f"no MNIST {split} set in {folder}: looked for {wanted}; {_HINT}")
    image_path, label_path = found
    return _as_set(load_idx(image_path), load_idx(label_path), image_path, label_path,
                   first_index=0, name=f"mnist-{split}")


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _fetch(url: str, timeout: float = 60.0) -> bytes:
    """The body of ``url`` (tests replace this function so that they never use the network)."""
    request = urllib.request.Request(url, headers={"User-Agent": "spikefab"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def download_mnist(folder: str | os.PathLike, splits: Iterable[str] = ("train", "test"), *,
                   mirrors: Iterable[str] = MIRRORS,
                   log: Callable[[str], None] | None = None) -> list[Path]:
    """Fetch the standard MNIST files (gzip) into a folder, checking their MD5 sums.

    Each file is fetched from the first mirror that answers with the right checksum and written
    through a temporary file and a rename, so an interrupted or bad download leaves nothing
    behind. A file already present with the right checksum is not fetched again; one with the
    wrong checksum is replaced.

    Parameters
    ----------
    folder : str or path-like
        Where to put the files; created if needed. :func:`load_mnist` reads it afterwards.
    splits : iterable of {"train", "test"}
        Which splits to fetch (the test split alone is about 1.6 MB, the training split 9.9 MB).
    mirrors : iterable of str
        Base URLs, tried in order; each must end in ``/``.
    log : callable, optional
        Called with one line of progress per file (e.g. ``print``).

    Returns
    -------
    list of Path
        The files, present and verified.

    Raises
    ------
    DataError
        If a file cannot be fetched with the right checksum from any mirror; the message lists
        what each mirror did.
    """
    splits = list(splits)
    for split in splits:
        if split not in _PREFIX:
            raise ValueError(f"splits must be among {sorted(_PREFIX)}, not {split!r}")
    mirrors = list(mirrors)
    if not mirrors:
        raise ValueError("download_mnist needs at least one mirror")
    log = log or (lambda line: None)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done = []
    for split in splits:
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{_PREFIX[split]}-{kind}-ubyte.gz"
            path = folder / name
            if path.is_file() and _md5(path.read_bytes()) == MD5[name]:
                log(f"{path}: present, checksum good")
                done.append(path)
                continue
            failures = []
            for mirror in mirrors:
                url = mirror + name
                try:
                    data = _fetch(url)
                except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts
                    failures.append(f"{url}: {exc}")
                    continue
                digest = _md5(data)
                if digest != MD5[name]:
                    failures.append(f"{url}: checksum mismatch (MD5 {digest}, expected "
                                    f"{MD5[name]})")
                    continue
                _write_atomic(path, data)
                log(f"{path}: fetched from {url}")
                done.append(path)
                break
            else:
                raise DataError(f"could not fetch {name} with the right checksum:\n  "
                                + "\n  ".join(failures)
                                + f"\nfetch the standard MNIST files by hand into {folder} "
                                "and point --data at it, or omit --data to use the bundled "
                                "slice")
    return done


# -- the bundled slice ------------------------------------------------------------------------

def bundled_slice() -> MNISTSet:
    """The slice of MNIST shipped with spikefab: training images 59000-59999.

    Returns
    -------
    MNISTSet
        1000 images; ``indices`` are their positions in the MNIST training file,
        ``59000 .. 59999``. A trainer must exclude these images from training.
    """
    folder = resources.files(__package__) / "data" / "mnist-slice"
    with resources.as_file(folder / SLICE_FILES[0]) as image_path, \
            resources.as_file(folder / SLICE_FILES[1]) as label_path:
        images, labels = load_idx(image_path), load_idx(label_path)
        result = _as_set(images, labels, image_path, label_path, first_index=SLICE_START,
                         name="mnist-slice")
    if len(result) != SLICE_COUNT:
        raise DataError(f"{image_path}: the bundled slice holds {len(result)} images, expected "
                        f"{SLICE_COUNT}; regenerate it with make_slice (see its README.md)")
    return MNISTSet(images=result.images, labels=result.labels, indices=result.indices,
                    name=result.name,
                    source=f"bundled slice: MNIST training images {SLICE_START}-"
                           f"{SLICE_START + SLICE_COUNT - 1} ({image_path.parent})")


def make_slice(source_folder: str | os.PathLike, out_folder: str | os.PathLike,
               start: int = SLICE_START, count: int = SLICE_COUNT) -> MNISTSet:
    """Cut a slice of the MNIST training file and write it as two gzip IDX files.

    This is how ``firmware/data/mnist-slice/`` was made::

        python -c "from spikefab.firmware.mnist import make_slice; \\
                   make_slice('/work/shared/data/mnist', 'firmware/data/mnist-slice')"

    Parameters
    ----------
    source_folder : str or path-like
        Holds ``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]``.
    out_folder : str or path-like
        Receives :data:`SLICE_FILES`; created if needed. The files are gzip with ``mtime=0``,
        so the same slice gives the same bytes.
    start, count : int
        The slice is training images ``start .. start + count - 1``.

    Returns
    -------
    MNISTSet
        The slice, with ``indices`` ``start .. start + count - 1``.
    """
    for label, value, low in (("start", start, 0), ("count", count, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, not {value!r}")
    train = load_mnist(source_folder, "train")
    if start + count > len(train):
        raise ValueError(f"the slice {start}..{start + count - 1} runs past the end of the "
                         f"training file, which holds {len(train)} images")
    out = Path(out_folder)
    out.mkdir(parents=True, exist_ok=True)
    images = train.images[start:start + count]
    labels = train.labels[start:start + count]
    write_idx(out / SLICE_FILES[0], images.reshape(count, ROWS, ROWS), compress=True)
    write_idx(out / SLICE_FILES[1], labels, compress=True)
    return MNISTSet(images=images.copy(), labels=labels.copy(),
                    indices=np.arange(start, start + count, dtype=np.int64), name="mnist-slice",
                    source=f"MNIST training images {start}-{start + count - 1} of "
                           f"{train.source}")
