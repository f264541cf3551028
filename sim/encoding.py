"""Rate encoding: the definitions of how pixels become spikes.

Two encoders, named by their generators; a model records which one it was trained and
evaluated with (:data:`ENCODERS`):

* ``"pcg64"`` (:func:`rate_encode`): drawn on the host, sent as spikes.
* ``"xorshift32"`` (:func:`chip_encode`): the chip's own (the ENCODE command of the host link,
  :meth:`~spikefab.hdl.abi.ChipInfo.encode_events`), which the host can also draw itself for a
  chip without an encoder: the same spikes either way.

**pcg64.** A pixel ``p`` in ``[0, 255]`` spikes at each step with probability exactly ``p / 255``.

Draw order (this *is* the format; every model of the chip depends on it): image ``i`` of a data
set gets its own generator ``numpy.random.Generator(PCG64(SeedSequence([seed, i])))``, which
makes one call ``integers(0, 255, size=(steps, pixels), dtype=uint8)``: a uniform ``r`` in
``[0, 254]`` per step and pixel, step-major, pixels in row-major (C) order of the image. The
pixel spikes iff ``r < p``, so ``p = 0`` never spikes and ``p = 255`` always does. The spikes of
image ``i`` therefore depend on ``(seed, i)`` only, never on the batch they are encoded in.

**xorshift32.** A pixel ``p`` spikes at each step with probability ``p / 256``. Image ``i``'s
generator starts from :func:`encoder_state` ``(seed, i)``, and at each step it is stepped
(:func:`~spikefab.hdl.abi.encoder_step`) once for every *non-zero* pixel, in row-major order;
the pixel spikes iff the draw, the new state's top 8 bits, is below ``p``. Zero pixels are
not sent to the chip and draw nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..hdl.abi import ENCODER_DRAW, ENCODER_SHIFTS

__all__ = ["rate_encode", "chip_encode", "encoder_state", "encoder_draws", "Pixels", "ENCODERS",
           "encode", "chip_inputs", "check_encoder"]


def _checked(images, steps, seed, indices):
    """The images flattened to uint8 rows and their indices; ValueError for bad arguments."""
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
    return flat, indices


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
    flat, indices = _checked(images, steps, seed, indices)
    batch = flat.shape[0]
    out = np.empty((steps, batch, flat.shape[1]), dtype=np.uint8)
    for k, (index, pixels) in enumerate(zip(indices.tolist(), flat)):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), index])))
        draws = rng.integers(0, 255, size=(steps, flat.shape[1]), dtype=np.uint8)
        out[:, k, :] = draws < pixels
    return out


def encoder_state(seed: int, index: int) -> int:
    """The ``xorshift32`` generator's start for image ``index`` under ``seed`` (what the host
    sends in ENCODE): from ``SeedSequence([seed, index])``, never 0."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0]) | 1


class _Jumps:
    """The generator's states after ``1 .. n`` steps from each one-bit state: the generator is
    linear over GF(2), so the states after ``k`` steps from any state are the XOR of these
    columns for its set bits (32 vector XORs instead of ``n`` scalar steps)."""

    def __init__(self):
        self.columns = np.zeros((32, 0), dtype=np.uint32)

    def get(self, n: int) -> np.ndarray:
        have = self.columns.shape[1]
        if n > have:
            grow = max(n, 2 * have)
            a, b, c = (np.uint32(k) for k in ENCODER_SHIFTS)
            out = np.empty((32, grow), dtype=np.uint32)
            out[:, :have] = self.columns
            x = (self.columns[:, -1].copy() if have
                 else np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32)))
            for k in range(have, grow):
                x ^= x << a
                x ^= x >> b
                x ^= x << c
                out[:, k] = x
            self.columns = out
        return self.columns[:, :n]


_JUMPS = _Jumps()


def encoder_draws(state: int, n: int) -> np.ndarray:
    """The generator's next ``n`` draws from ``state`` (uint8 each: the top bits of each new
    state)."""
    columns = _JUMPS.get(n)
    states = np.zeros(n, dtype=np.uint32)
    for bit in range(32):
        if state >> bit & 1:
            states ^= columns[bit]
    return (states >> np.uint32(32 - ENCODER_DRAW)).astype(np.uint8)


@dataclass(frozen=True)
class Pixels:
    """Images for the chip's encoder (``xorshift32``): their pixels and each one's generator
    start, the spikes not drawn yet. A chip with the encoder draws them itself (the driver sends
    ENCODE); elsewhere :meth:`spikes` draws the same ones.

    Attributes
    ----------
    images : ndarray of uint8, shape ``(count, inputs)``
    steps : int
        Ticks of input ``T``.
    states : ndarray of uint32, shape ``(count,)``
        Each image's :func:`encoder_state`.
    """
    images: np.ndarray
    steps: int
    states: np.ndarray

    @classmethod
    def of(cls, images: np.ndarray, steps: int, seed: int,
           indices: Sequence[int] | np.ndarray | None = None) -> "Pixels":
        """The images as :func:`chip_encode` keys them: on ``(seed, index)``."""
        flat, indices = _checked(images, steps, seed, indices)
        states = np.array([encoder_state(seed, i) for i in indices.tolist()], dtype=np.uint32)
        return cls(flat, int(steps), states)

    def __len__(self) -> int:
        return self.images.shape[0]

    def part(self, start: int, stop: int) -> "Pixels":
        """Images ``start`` to ``stop`` (a shard of a run)."""
        return Pixels(self.images[start:stop], self.steps, self.states[start:stop])

    def image_spikes(self, k: int) -> np.ndarray:
        """Image ``k``'s spikes, shape ``(steps, inputs)``."""
        pixels = self.images[k]
        lit = np.flatnonzero(pixels)
        draws = encoder_draws(int(self.states[k]), self.steps * lit.size)
        out = np.zeros((self.steps, pixels.size), dtype=np.uint8)
        out[:, lit] = draws.reshape(self.steps, lit.size) < pixels[lit]
        return out

    def spikes(self) -> np.ndarray:
        """Every image's spikes, shape ``(steps, count, inputs)`` (as :func:`rate_encode`)."""
        out = np.zeros((self.steps, *self.images.shape), dtype=np.uint8)
        for k in range(len(self)):
            out[:, k] = self.image_spikes(k)
        return out


def chip_encode(images: np.ndarray, steps: int, seed: int,
                indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Encode a batch of images as the chip's encoder does (``xorshift32``, above); the
    parameters and the result are :func:`rate_encode`'s."""
    return Pixels.of(images, steps, seed, indices).spikes()


#: The encoders by name: what a model records (``Model.encoder``).
ENCODERS = {"pcg64": rate_encode, "xorshift32": chip_encode}


def check_encoder(name) -> str:
    """``name`` if it names an encoder; ValueError naming the encoders otherwise."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}: the encoders are {sorted(ENCODERS)}")
    return name


def encode(images: np.ndarray, steps: int, seed: int,
           indices: Sequence[int] | np.ndarray | None = None, *,
           encoder: str = "pcg64") -> np.ndarray:
    """The spikes of ``images`` under the encoder named ``encoder`` (:data:`ENCODERS`)."""
    return ENCODERS[check_encoder(encoder)](images, steps, seed, indices)


def chip_inputs(images: np.ndarray, steps: int, seed: int,
                indices: Sequence[int] | np.ndarray | None = None, *,
                encoder: str = "pcg64"):
    """What a chip's ``run`` takes for ``images`` under ``encoder``: their :class:`Pixels` for
    the chip's own encoder (a chip with it draws the spikes), else their spikes."""
    if check_encoder(encoder) == "xorshift32":
        return Pixels.of(images, steps, seed, indices)
    return encode(images, steps, seed, indices, encoder=encoder)
