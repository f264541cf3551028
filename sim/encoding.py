"""Rate encoding: the one definition of how pixels become spikes.

A pixel ``p`` in ``[0, 255]`` spikes at each step with probability exactly ``p / 255``.

Draw order (this *is* the format; every model of the chip depends on it): image ``i`` of a data
set gets its own generator ``numpy.random.Generator(PCG64(SeedSequence([seed, i])))``, which
makes one call ``integers(0, 255, size=(steps, pixels), dtype=uint8)``: a uniform ``r`` in
``[0, 254]`` per step and pixel, step-major, pixels in row-major (C) order of the image. The
pixel spikes iff ``r < p``, so ``p = 0`` never spikes and ``p = 255`` always does. The spikes of
image ``i`` therefore depend on ``(seed, i)`` only, never on the batch they are encoded in.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["rate_encode"]


def rate_encode(images: np.ndarray, steps: int, seed: int,
                indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Encode a batch of images as spike trains.

    Parameters
    ----------
    images : array of uint8, shape ``(batch, ...)``
        Pixel intensities; each image is flattened in C order.
    steps : int
        Number of ticks ``T``.
    seed : int
        Non-negative seed shared by every image of a run.
    indices : sequence of int, optional
        The data-set index of each image (what its spikes are keyed on). Defaults to
        ``0 .. batch-1``.

    Returns
    -------
    ndarray of uint8, shape ``(T, batch, pixels)``
        1 where a pixel spikes at a step; laid out for :meth:`CoreModel.run`.
    """
    images = np.asarray(images)
    if images.ndim < 1:
        raise ValueError(f"images must have a batch axis, got shape {images.shape}")
    if images.size and (not np.issubdtype(images.dtype, np.integer)
                        or images.min() < 0 or images.max() > 255):
        raise ValueError("images must hold integer pixels in [0, 255]")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, not {steps!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    batch = images.shape[0]
    flat = images.reshape(batch, -1).astype(np.uint8)
    if indices is None:
        indices = np.arange(batch)
    indices = np.asarray(indices)
    if indices.shape != (batch,):
        raise ValueError(f"indices must have one entry per image ({batch}), "
                         f"not shape {indices.shape}")
    if indices.size and indices.min() < 0:
        raise ValueError("indices must be non-negative")
    out = np.empty((steps, batch, flat.shape[1]), dtype=np.uint8)
    for k, (index, pixels) in enumerate(zip(indices.tolist(), flat)):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), index])))
        draws = rng.integers(0, 255, size=(steps, flat.shape[1]), dtype=np.uint8)
        out[:, k, :] = draws < pixels
    return out
