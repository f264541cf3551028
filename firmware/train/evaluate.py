"""Evaluation of a trained model on the golden model (:func:`golden_evaluate`)."""

from __future__ import annotations

import numpy as np

from ...sim.encoding import encode
from ..model import Model
from .data import _check_data, _check_indices

__all__ = ["golden_evaluate"]


# ---- evaluation on the golden model -------------------------------------------------------------

def golden_evaluate(model: Model, images, labels, indices=None, *, steps: int | None = None,
                    seed: int = 0, profile: str = "icebreaker") -> dict:
    """Accuracy of ``model`` on the golden model, as ``spikefab run --target golden`` measures
    it: rate-encoded with the model's encoder and ``seed``, keyed on ``indices``, compiled for
    ``profile`` and run on :class:`spikefab.firmware.driver.GoldenChip` (the golden chip
    model).

    A model that does not fit ``profile`` runs on :meth:`Model.forward` instead (the integer
    network simulator the golden chip model equals).

    Returns ``{"accuracy", "correct", "images", "steps", "seed", "predictions", "golden"}``
    (``golden`` names the model that ran).
    """
    from ..compiler import CompileError, compile_model
    from ...sim.golden_chip import GoldenChip
    images, labels = _check_data(images, labels, "evaluation", model.inputs)
    indices = _check_indices(indices, len(images), "evaluation")
    steps = steps or model.steps or 25
    try:
        image = compile_model(model, profile)
    except CompileError:
        chip, golden = None, "Model.forward"
    else:
        chip, golden = GoldenChip(image.info), f"GoldenChip ({profile})"
        chip.load(image)
    correct, predictions = 0, []
    for lo in range(0, len(images), 1000):
        spikes = encode(images[lo:lo + 1000], steps, seed, indices[lo:lo + 1000],
                        encoder=model.encoder)
        decided = (chip.run(spikes).predictions if chip is not None
                   else model.forward(spikes).predictions)
        predictions.append(decided)
        correct += int((decided == labels[lo:lo + 1000]).sum())
    return {"accuracy": correct / len(images), "correct": correct, "images": len(images),
            "steps": steps, "seed": seed, "predictions": np.concatenate(predictions),
            "golden": golden}
