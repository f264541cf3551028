"""Evaluation of a trained model on the golden model (:func:`golden_evaluate`)."""

from __future__ import annotations


import numpy as np

from ...sim.encoding import rate_encode
from ...sim.golden import decode
from ..model import Model

from .data import _check_data, _check_indices
__all__ = ["golden_evaluate"]


# ---- evaluation on the golden model -------------------------------------------------------------

def golden_evaluate(model: Model, images, labels, indices=None, *, steps: int | None = None,
                    seed: int = 0, profile: str = "icebreaker") -> dict:
    """Accuracy of ``model`` on the golden model, as ``spikefab run --target golden`` measures
    it: rate-encoded with ``seed`` keyed on ``indices``, compiled for ``profile`` and run on
    :class:`spikefab.firmware.driver.GoldenChip` (the golden chip model).

    A model that does not fit ``profile`` runs on a chain of :class:`spikefab.sim.golden.
    CoreModel` instead (one core per layer, each a tick behind the one before, as the chip).

    Returns ``{"accuracy", "correct", "images", "steps", "seed", "predictions", "golden"}``
    (``golden`` names the model that ran).
    """
    from ..compiler import CompileError, compile_model
    from ...sim.golden_chip import GoldenChip
    from ...hdl.profiles import get_profile
    images, labels = _check_data(images, labels, "evaluation", model.inputs)
    indices = _check_indices(indices, len(images), "evaluation")
    steps = steps or model.steps or 25
    try:
        image = compile_model(model, profile)
    except CompileError:
        chip, golden = None, "CoreModel chain"
    else:
        chip, golden = GoldenChip(get_profile(profile).info()), f"GoldenChip ({profile})"
        chip.load(image)
    correct, predictions = 0, []
    for lo in range(0, len(images), 1000):
        spikes = rate_encode(images[lo:lo + 1000], steps, seed, indices[lo:lo + 1000])
        decided = (chip.run(spikes).predictions if chip is not None
                   else _core_chain_predict(model, spikes))
        predictions.append(decided)
        correct += int((decided == labels[lo:lo + 1000]).sum())
    return {"accuracy": correct / len(images), "correct": correct, "images": len(images),
            "steps": steps, "seed": seed, "predictions": np.concatenate(predictions),
            "golden": golden}


def _core_chain_predict(model: Model, spikes: np.ndarray) -> np.ndarray:
    """Decoded classes from the golden model, one :class:`CoreModel` per layer."""
    from ...sim.golden import CoreModel
    from ...hdl.abi import CoreShape
    steps, batch = spikes.shape[:2]
    ticks = steps + len(model.layers) - 1
    cores = [CoreModel(CoreShape(layer.inputs, layer.outputs, w_bits=model.w_bits,
                                 v_bits=model.v_bits), layer.weights, layer.config(),
                       layer.bias, batch=batch) for layer in model.layers]
    previous = [np.zeros((batch, layer.outputs), bool) for layer in model.layers]
    counts = np.zeros((batch, model.classes), np.int64)
    for t in range(ticks):
        fired = []
        for l, core in enumerate(cores):
            core.deliver_spikes(spikes[t] if l == 0 and t < steps else
                                np.zeros((batch, core.shape.axons), np.int64) if l == 0
                                else previous[l - 1])
            fired.append(core.update())
        previous = fired
        counts += fired[-1]
    return decode(counts, cores[-1].v)
