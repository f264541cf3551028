"""The trainer's data: checks, the MNIST split, shifted images, derived seeds."""

from __future__ import annotations

import math

import numpy as np


__all__ = ["VAL_START", "shift_images", "split_indices"]


#: First training-file image of the validation split of :func:`train_mnist`.
VAL_START = 55000


# ---- data ---------------------------------------------------------------------------------------

def _check_data(images, labels, name: str, inputs: int | None = None):
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim < 2:
        raise ValueError(f"{name} images must be (count, pixels) or (count, rows, cols), "
                         f"not shape {images.shape}")
    if len(images) == 0 or images.size == 0:
        raise ValueError(f"{name} images are empty (shape {images.shape})")
    flat = images.reshape(len(images), -1)
    if not np.issubdtype(flat.dtype, np.integer) or flat.min() < 0 or flat.max() > 255:
        raise ValueError(f"{name} images must hold integer pixels in [0, 255]")
    if inputs is not None and flat.shape[1] != inputs:
        raise ValueError(f"{name} images have {flat.shape[1]} pixels, the training images "
                         f"{inputs}")
    if labels.shape != (len(flat),):
        raise ValueError(f"{name} labels must have shape ({len(flat)},) (one per image), "
                         f"not {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(f"{name} labels must be non-negative integers")
    return flat.astype(np.uint8), labels.astype(np.int64)


def _check_indices(indices, count: int, name: str) -> np.ndarray:
    if indices is None:
        return np.arange(count, dtype=np.int64)
    indices = np.asarray(indices)
    if indices.shape != (count,) or not np.issubdtype(indices.dtype, np.integer) or (
            count and indices.min() < 0):
        raise ValueError(f"{name} indices must be {count} non-negative integers (one per "
                         f"image), not {indices.dtype} of shape {indices.shape}")
    return indices.astype(np.int64)


def shift_images(images: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Shift square images ``(n, side*side)`` by ``(dx[i], dy[i])`` pixels each (zero fill)."""
    n, pixels = images.shape
    side = math.isqrt(pixels)
    pad = int(max(np.abs(dx).max(initial=0), np.abs(dy).max(initial=0)))
    if pad == 0:
        return images.copy()
    square = np.pad(images.reshape(n, side, side), ((0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(square, (side, side), axis=(1, 2))
    # windows[i, r, c] is the image seen from offset (r, c); offset pad is no shift.
    return windows[np.arange(n), pad - dy, pad - dx].reshape(n, pixels)


def split_indices(count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` positions in a training file of ``count`` images: with the
    standard 60000, ``0 .. 54999`` and ``55000 .. 59999`` (the bundled slice, ``59000 ..
    59999``, is in the validation part); with another count, the last twelfth validates."""
    if count < 2:
        raise ValueError(f"the training file must hold at least 2 images, not {count}")
    start = VAL_START if count == 60000 else count - max(1, count // 12)
    return np.arange(start, dtype=np.int64), np.arange(start, count, dtype=np.int64)


def _derived_seed(*keys: int) -> int:
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint32)[0])
