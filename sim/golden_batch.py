"""Every tick's input delivery of a run at once: the exact row sums a core's accumulators get.

The input of a core's whole run is known before it starts (``(T, batch, k)`` event counts), so
the sums ``S[t, b] @ W`` of every tick can be computed together, and they are cheap to compute
together for the input a chip sees in practice. Rate-coded images (``rate_encode``) are
sparse and nearly constant in time: most axons never spike (pixel 0), many spike in every tick
(pixel 255), and only the ~100 of 784 axons of an image's stroke edges change from tick to
tick. Splitting each run's counts into a per-axon floor ``m[b, j] = min_t S[t, b, j]`` and the
rest,

    S[t, b] @ W = m[b] @ W  +  (S[t, b] - m[b])[J_b] @ W[J_b]

with ``J_b`` the axons whose count is not the same in every tick, turns one dense product over
every axon and tick into one product per run over its floor (one tick's worth of work) and one
small product per run over ``J_b`` only. The small products are float32 BLAS calls (an integer
gather-add in NumPy costs about 50 ns per row, several times BLAS's cost per operation, which
is why this is not a gather-add); runs are sorted by ``len(J_b)`` and padded per group of
similar size so that little of the work is padding.

Every sum is exact: the float type is chosen so that the largest possible magnitude of any
partial sum is an integer its mantissa holds (float32 below 2**24, float64 below 2**53, else
int64), the same argument as :meth:`CoreModel.deliver_spikes`. Whether the total wraps in the
accumulator is decided by the caller, from the counts, exactly as for any other delivery.
"""

from __future__ import annotations

import numpy as np

__all__ = ["spike_sums", "spike_sums_reference"]

#: Runs of similar ``len(J_b)`` share one batched product; this many runs per group.
_GROUP = 64
#: Above this share of varying axons the dense product over all axons is cheaper.
_DENSE_SHARE = 0.5


def _exact_dtype(bound: int):
    if bound < (1 << 24):
        return np.float32
    if bound < (1 << 53):
        return np.float64
    return np.int64


def spike_sums(weights: np.ndarray, spikes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact delivery of every tick of a run: ``(sums, counts)``.

    ``weights`` is ``(A, N)`` integers, ``spikes`` ``(T, batch, k)`` non-negative event counts
    with ``k <= A`` (axons ``k ..`` get no events). Returns ``sums[t, b] = spikes[t, b] @
    weights[:k]``, shape ``(T, batch, N)``, unwrapped, and ``counts[t, b]``, the number of
    events, shape ``(T, batch)``; int32 where every sum fits it, else int64. Equal to :func:`spike_sums_reference`.
    """
    spikes = np.asarray(spikes)
    if spikes.ndim != 3:
        raise ValueError(f"spikes must have shape (T, batch, k), not {spikes.shape}")
    steps, batch, k = spikes.shape
    weights = np.asarray(weights)[:k]
    n = weights.shape[1]
    if not spikes.size:
        return np.zeros((steps, batch, n), np.int64), np.zeros((steps, batch), np.int64)
    if spikes.dtype.kind not in "iu":
        raise TypeError(f"spikes must hold integers, not {spikes.dtype}")
    w_abs = max(int(np.abs(weights).max(initial=0)), 1)
    top = int(spikes.max())
    # Every partial sum of every tick, floor part and rest alike, is at most k events of
    # at most top each, of at most |w| each, and so is every count (the last column).
    bound = k * top * w_abs
    dtype = _exact_dtype(bound)
    out_type = np.int32 if bound < (1 << 31) else np.int64
    # The weights with a column of ones, so the product's last column counts the events, and
    # a zero row (index k) for the padding of J_b.
    ext = np.zeros((k + 1, n + 1), dtype)
    ext[:k, :n] = weights
    ext[:k, n] = 1
    floor = spikes.min(axis=0)                      # (batch, k)
    varying = spikes.max(axis=0) != floor
    per_run = varying.sum(axis=1)
    if per_run.mean() > _DENSE_SHARE * k:
        flat = spikes.reshape(steps * batch, k).astype(dtype) @ ext[:k]
        ints = flat.astype(out_type).reshape(steps, batch, n + 1)
        return ints[..., :n], ints[..., n]
    # Per run, all ticks: (batch, T, N + 1), so that a group of runs is a block of rows.
    acc = np.zeros((batch, steps, n + 1), dtype)
    if per_run.any():
        widest = int(per_run.max())
        runs, axons = np.nonzero(varying)
        starts = np.zeros(batch, np.int64)
        np.cumsum(per_run[:-1], out=starts[1:])
        slots = np.full((batch, widest), k, np.intp)
        slots[runs, np.arange(len(runs)) - starts[runs]] = axons
        flat_spikes = spikes.reshape(steps, batch * k)
        flat_floor = floor.reshape(-1)
        order = np.argsort(per_run, kind="stable")
        for lo in range(0, batch, _GROUP):
            group = order[lo:lo + _GROUP]
            width = int(per_run[group[-1]])     # sorted: the group's widest is its last
            if width == 0:
                continue
            cols = slots[group, :width]
            # Padding slots read axon 0 of their run; the zero weight row cancels it.
            flat_cols = group[:, None] * k + np.minimum(cols, k - 1)
            delta = flat_spikes[:, flat_cols].astype(dtype)       # (T, G, width)
            if top > 1:     # with 0/1 input an axon that varies has floor 0
                delta -= flat_floor[flat_cols].astype(dtype)
            acc[group] = np.matmul(delta.transpose(1, 0, 2), ext[cols])
    if floor.any():
        acc += (floor.astype(dtype) @ ext[:k])[:, None, :]
    ints = acc.astype(out_type).transpose(1, 0, 2)
    return ints[..., :n], ints[..., n]


def spike_sums_reference(weights: np.ndarray, spikes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`spike_sums` the plain way: an int64 product per tick (the reference it is
    tested against)."""
    spikes = np.asarray(spikes).astype(np.int64)
    weights = np.asarray(weights, np.int64)[:spikes.shape[2]]
    return spikes @ weights, spikes.sum(axis=2)
