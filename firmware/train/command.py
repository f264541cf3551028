"""``spikefab train``: MNIST from a folder, trained, evaluated, saved, reported."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, replace



from .config import TrainConfig
from .data import split_indices
from .evaluate import golden_evaluate
from .trainer import TrainResult, train
__all__ = ["train_mnist", "train_command", "format_train_report"]


def train_mnist(folder, config: TrainConfig = TrainConfig(), *, name: str | None = None,
                progress: bool = False) -> TrainResult:
    """Train on the MNIST training file in ``folder`` (``train-images-idx3-ubyte[.gz]`` and
    ``train-labels-idx1-ubyte[.gz]``) with the split of :func:`split_indices`: images ``0 ..
    54999`` train, ``55000 .. 59999`` validate (they hold the bundled slice)."""
    from ..mnist import load_mnist
    data = load_mnist(folder, split="train")
    train_at, val_at = split_indices(len(data.labels))
    return train(data.images[train_at], data.labels[train_at], config=config,
                 val_images=data.images[val_at], val_labels=data.labels[val_at],
                 indices=data.indices[train_at], val_indices=data.indices[val_at], classes=10,
                 name=name, progress=progress)


def _config_dict(config: TrainConfig) -> dict:
    return asdict(replace(config, qat_epochs=config.qat))


# ---- the command -------------------------------------------------------------------------------

def train_command(data, config: TrainConfig, output, *, name: str | None = None,
                  profile: str = "icebreaker", progress: bool = True) -> dict:
    """``spikefab train``: train on the MNIST training file in ``data`` (split of
    :func:`split_indices`), write the integer model to ``output``, then measure its validation
    accuracy on the golden model (:func:`golden_evaluate`, encoder seed ``config.eval_seed``),
    also on the part of it that is the bundled slice. Returns a report dict."""
    from pathlib import Path

    from ..mnist import SLICE_COUNT, SLICE_START, load_mnist
    config = config.validate()
    output = Path(output)
    if not output.parent.is_dir():
        raise ValueError(f"-o {output}: folder {output.parent} does not exist")
    dataset = load_mnist(data, split="train")
    train_at, val_at = split_indices(len(dataset.labels))
    if progress:
        sizes = "-".join(map(str, (dataset.images.shape[1], *config.hidden_layers, 10)))
        recurrent = ", recurrent hidden layers" if config.recurrent else ""
        print(f"training {sizes}{recurrent}, T = {config.steps}, "
              f"{config.w_bits}-bit weights, {config.epochs} epochs ({config.epochs - config.qat}"
              f" float + {config.qat} quantization-aware), seed {config.seed}; training images "
              f"{train_at[0]}-{train_at[-1]}, validation {val_at[0]}-{val_at[-1]}",
              file=sys.stderr, flush=True)
    result = train(dataset.images[train_at], dataset.labels[train_at], config=config,
                   val_images=dataset.images[val_at], val_labels=dataset.labels[val_at],
                   indices=dataset.indices[train_at], val_indices=dataset.indices[val_at],
                   classes=10, name=name, progress=progress)
    result.model.save(output)
    start = time.perf_counter()
    val_indices = dataset.indices[val_at]
    golden = golden_evaluate(result.model, dataset.images[val_at], dataset.labels[val_at],
                             val_indices, seed=config.eval_seed, profile=profile)
    in_slice = (val_indices >= SLICE_START) & (val_indices < SLICE_START + SLICE_COUNT)
    slice_report = None
    if in_slice.any():
        hits = int((golden["predictions"][in_slice] == dataset.labels[val_at][in_slice]).sum())
        slice_report = {"images": int(in_slice.sum()), "correct": hits,
                        "accuracy": hits / int(in_slice.sum())}
    return {
        "output": str(output), "model": result.model.name, "sha256": result.model.digest(),
        "sizes": result.model.sizes, "steps": config.steps, "w_bits": config.w_bits,
        "config": _config_dict(config),
        "train_images": [int(train_at[0]), int(train_at[-1])],
        "val_images": [int(val_at[0]), int(val_at[-1])],
        "val_accuracy": golden["accuracy"], "val_correct": golden["correct"],
        "val_count": golden["images"], "trainer_val_accuracy": result.val_accuracy,
        "slice": slice_report, "profile": profile, "golden": golden["golden"],
        "eval_seed": config.eval_seed, "encoder": config.encoder,
        "train_seconds": result.seconds, "eval_seconds": time.perf_counter() - start,
        "history": result.history,
    }


def format_train_report(report: dict) -> str:
    """The text ``spikefab train`` prints for a :func:`train_command` report."""
    first, last = report["val_images"]
    lines = [
        (f"wrote {report['output']} (model {report['model']}, "
         f"{'-'.join(map(str, report['sizes']))}, T = {report['steps']}, "
         f"{report['w_bits']}-bit weights, sha256 {report['sha256'][:12]})"),
        (f"validation accuracy (integer model on the golden model, {report['golden']}, "
         f"encoder seed {report['eval_seed']}, training images {first}-{last}): "
         f"{report['val_accuracy']:.2%} ({report['val_correct']}/{report['val_count']})"),
    ]
    if report["slice"]:
        s = report["slice"]
        lines.append(f"  of which the bundled slice (59000-59999): {s['accuracy']:.2%} "
                     f"({s['correct']}/{s['images']})")
    minutes = report["train_seconds"] / 60
    lines.append(f"training time: {report['train_seconds']:.1f} s ({minutes:.1f} min)")
    return "\n".join(lines)
