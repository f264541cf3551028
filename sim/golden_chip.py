"""The golden target: the driver's chip API on the golden chip model, a whole batch at a time.

:class:`GoldenChip` reads an image exactly as a chip does (through the link model), then runs
batches of images through :class:`~spikefab.sim.chip.ChipModel` with the semantics every target
shares (see :mod:`spikefab.firmware.driver`).
"""

from __future__ import annotations

import time

import numpy as np

from ..firmware.driver import TICK_MASK, ChipBase, Link, RunResult, check_spikes, image_frames
from ..hdl.abi import ChipInfo, LinkStatus
from .chip import ChipModel
from .golden import decode
from .golden_batch import spike_sums
from .link_model import ModelTransport

__all__ = ["GoldenChip"]


class GoldenChip(ChipBase):
    """The golden chip model, a whole batch of images at once."""

    def __init__(self, info: ChipInfo, *, target: str = "golden"):
        self.info = info
        self.target = target
        self.program = None

    def load(self, image) -> None:
        # Through the protocol's own model, so the image is read exactly as a chip reads it.
        self._check_image(image)
        transport = ModelTransport(self.info)
        link = Link(transport)
        link.batch(image_frames(link, image))
        self.program = transport.model.program()
        self.image = image

    def status(self) -> LinkStatus:
        """STATUS's counters as far as the golden model has them: no link (frames, bad
        frames, NAKs 0), no clock (cycles 0); every :meth:`run` starts from reset and takes
        all its outputs (none pending or dropped) and keeps no state after it (ticks and mesh
        drops 0)."""
        return LinkStatus(ticks=0, mesh_drops=0, output_drops=0, output_pending=0, frames=0,
                          bad_frames=0, naks=0, cycles=0)

    def run(self, spikes, *, progress=None, batch: int = 1000,
            outputs: bool = True, per_image: bool = False) -> RunResult:
        """Every image of ``spikes``; ``outputs=False`` skips listing each output event
        (``RunResult.outputs`` is then empty), which is much faster for large batches.
        ``per_image`` adds each image's synaptic ops (``RunResult.sops_per_image``; the golden
        model has no clock, so no cycles)."""
        image = self.image
        if image is None:
            raise ValueError("load an image first")
        spikes = check_spikes(spikes, image.inputs)
        steps, count, _ = spikes.shape
        start = time.perf_counter()
        in_tiles = [tuple(t) for t in image.input_tiles]
        counts = np.zeros((count, image.classes), np.int64)
        final_v = np.zeros((count, image.classes), np.int64)
        events = [[] for _ in range(count)] if outputs else []
        to_host = {o: self.program.cores[o.tile].to_host[:o.count] for o in image.outputs}
        sops = 0
        sops_each = np.zeros(count, np.int64)
        for lo in range(0, count, batch):
            hi = min(count, lo + batch)
            model = ChipModel(self.program, batch=hi - lo)
            # The host input of every tick is known in advance: its deliveries are summed
            # for the whole run at once, far faster than tick by tick (sim/golden_batch.py).
            sums = {tile: spike_sums(model.cores[tile].weights, spikes[:, lo:hi])
                    for tile in in_tiles}
            for t in range(steps + image.drain_ticks):
                host = {tile: (s[t], c[t]) for tile, (s, c) in sums.items()} if t < steps else {}
                ticked = model.step(host_sums=host, collect=outputs)
                for o, reports in to_host.items():
                    counts[lo:hi, o.first:o.first + o.count] += \
                        model.spikes[o.tile][:, :o.count] & reports
                if outputs:
                    for b, got in enumerate(ticked):
                        events[lo + b] += [(x, y, n, tick & TICK_MASK) for x, y, n, tick in got]
            model.deliver_pending()   # as on the chip: the last spikes reach their cores
            for o in image.outputs:
                final_v[lo:hi, o.first:o.first + o.count] = model.cores[o.tile].v[:, :o.count]
            sops += sum(core.counters.sops for core in model.cores.values())
            for core in model.cores.values():
                sops_each[lo:hi] += core.events_per_run * core.shape.neurons
            if progress:
                progress(hi, count)
        return RunResult(self.target, decode(counts, final_v), counts, final_v, events, sops,
                         None, time.perf_counter() - start,
                         sops_per_image=sops_each if per_image else None)

    def close(self):
        pass
