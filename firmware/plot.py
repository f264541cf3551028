"""Spike rasters: input, every layer, output, for one image (``spikefab run --plot``).

The layers' spikes come from the golden chip model, which every target equals spike for spike
(the RTL and the boards are checked against it); only the output layer is observable on a
board. Needs matplotlib (``pip install 'spikefab[plot]'``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["layer_spikes", "plot_raster"]


def layer_spikes(image, program, spikes_one: np.ndarray) -> list[np.ndarray]:
    """``[input (ticks, inputs), layer 0 (ticks, outputs), ...]`` for one image, on the chip's
    timeline (layer ``l`` answers ``l`` ticks after its input)."""
    from ..sim.chip import ChipModel
    steps = spikes_one.shape[0]
    ticks = steps + image.drain_ticks
    model = ChipModel(program, batch=1)
    placement = image.meta.get("placement") or []
    sizes = image.meta.get("sizes") or []
    layers = [np.zeros((ticks, n), bool) for n in sizes[1:]]
    inputs = np.zeros((ticks, image.inputs), bool)
    for t in range(ticks):
        host = {}
        if t < steps:
            inputs[t] = spikes_one[t] > 0
            host = {tuple(tile): spikes_one[t][None, :] for tile in image.input_tiles}
        model.step(host_spikes=host, collect=False)
        for p in placement:   # a slice of a layer on each tile
            first = p.get("first", 0)
            layers[p["layer"]][t, first:first + p["outputs"]] = \
                model.spikes[tuple(p["tile"])][0, :p["outputs"]]
    return [inputs] + layers


def plot_raster(rasters: list[np.ndarray], path, *, title: str = "", label=None) -> None:
    """Draw the rasters one above the other (time across) and save to ``path``."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install matplotlib "
                         "(or pip install 'spikefab[plot]')") from None
    names = ["input"] + [f"layer {k}" for k in range(len(rasters) - 2)] + ["output"]
    heights = [min(4.0, max(1.0, r.shape[1] / 40)) for r in rasters]
    fig, axes = plt.subplots(len(rasters), 1, sharex=True, figsize=(8, 1.2 + sum(heights)),
                             gridspec_kw={"height_ratios": heights})
    for ax, raster, name in zip(np.atleast_1d(axes), rasters, names):
        t, n = np.nonzero(raster)
        ax.scatter(t, n, s=2 if raster.shape[1] > 50 else 8, marker="|", color="black")
        ax.set_ylabel(f"{name}\n({raster.shape[1]})")
        ax.set_ylim(-0.5, raster.shape[1] - 0.5)
        if name == "output" and raster.shape[1] <= 16:
            ax.set_yticks(range(raster.shape[1]))
    np.atleast_1d(axes)[-1].set_xlabel("tick")
    fig.suptitle(title + (f" (label {label})" if label is not None else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
