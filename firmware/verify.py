"""``spikefab verify``: the RTL against the golden model, image by image.

Every image runs on the golden chip model and on the RTL simulation (sharded over worker
processes, :mod:`spikefab.firmware.shard`); for each image the two must agree on the
prediction, the output spike counts, the output membranes after the run, every output event
(as a multiset: the events of one tick may reach the host in any order, docs/semantics.md)
and the synaptic operations. Each mismatch names the image and everything needed to run it
alone again.
"""

from __future__ import annotations

import time
from collections import Counter

__all__ = ["compare", "verify_mnist", "format_verify"]


def compare(golden, rtl) -> list[dict]:
    """Per image ``k`` of two :class:`~spikefab.firmware.driver.RunResult` over the same
    images, what differs: ``[{"position": k, "differs": [...], "golden": {...}, "rtl":
    {...}}]``, empty when they agree on every image."""
    found = []
    for k in range(golden.images):
        differs = []
        if golden.predictions[k] != rtl.predictions[k]:
            differs.append("prediction")
        if (golden.counts[k] != rtl.counts[k]).any():
            differs.append("output counts")
        if (golden.final_v[k] != rtl.final_v[k]).any():
            differs.append("final membranes")
        if Counter(golden.outputs[k]) != Counter(rtl.outputs[k]):
            differs.append("output events")
        if golden.sops_per_image[k] != rtl.sops_per_image[k]:
            differs.append("synaptic ops")
        if differs:
            found.append({
                "position": k, "differs": differs,
                **{name: {"prediction": int(r.predictions[k]),
                          "counts": [int(c) for c in r.counts[k]],
                          "sops": int(r.sops_per_image[k]),
                          "output_events": len(r.outputs[k])}
                   for name, r in (("golden", golden), ("rtl", rtl))}})
    return found


def verify_mnist(*, model: str = "mnist-fast", data: str | None = None, split: str = "test",
                 first: int = 0, count: int | None = None, steps: int | None = None, seed: int = 0,
                 profile: str | None = None, board: str | None = None, target: str = "sim",
                 workers: int | str | None = None, progress: bool = True) -> dict:
    """Run ``count`` images on the golden model and on ``target`` (an RTL simulation) and
    compare them image by image; the report dict (``images``, ``mismatches``, ``workers``,
    ``seconds``, ``images_per_second``, ...)."""
    from ..sim.golden_chip import GoldenChip
    from .run import prepare, run_images, simulated
    from .shard import default_workers, parse_workers
    if not simulated(target):
        raise ValueError(f"verify checks an RTL simulation against the golden model; "
                         f"{target!r} is not one (use --target sim or cocotb)")
    work = prepare(model=model, data=data, split=split, first=first, count=count,
                   steps=steps, seed=seed, profile=profile, board=board)
    count = len(work.labels)
    golden = GoldenChip(work.image.chip_profile().info())
    golden.load(work.image)
    expected = golden.run(work.spikes, outputs=True, per_image=True)
    workers = default_workers() if workers is None else parse_workers(workers)
    start = time.perf_counter()
    got = run_images(target, work, workers=workers, progress=progress)
    seconds = time.perf_counter() - start
    mismatches = []
    for entry in compare(expected, got):
        k = entry.pop("position")
        mismatches.append({
            "index": int(work.indices[k]), "position": first + k, "seed": seed,
            "replay": (f"spikefab verify --model {model}"
                       + (f" --data {data} --split {split}" if data else "")
                       + f" --first {first + k} --count 1 --seed {seed}"
                       + (f" --steps {steps}" if steps else "")
                       + (f" --profile {profile}" if profile else "")
                       + (f" --board {board}" if board else "")
                       + f" --target {target} --workers 1"),
            **entry})
    cycles = got.cycles_per_image
    return {
        "target": str(target), "model": model, "chip": work.image.profile, "data": work.data,
        "first": first, "images": count, "steps": work.steps, "seed": seed,
        "mismatches": mismatches, "workers": workers, "seconds": seconds,
        "images_per_second": count / seconds if seconds else None,
        "accuracy": float((got.predictions == work.labels).mean()),
        "sops_per_image": float(got.sops_per_image.mean()),
        "cycles_per_image": {"mean": float(cycles.mean()), "min": int(cycles.min()),
                             "max": int(cycles.max())},
    }


def format_verify(report: dict) -> str:
    cycles = report["cycles_per_image"]
    lines = [
        f"verify {report['target']} against golden: {report['images']} images of "
        f"{report['data']} from position {report['first']}, T = {report['steps']}, seed "
        f"{report['seed']}, model {report['model']} on chip {report['chip']}",
        f"{report['images'] - len(report['mismatches'])} of {report['images']} images agree "
        f"(predictions, output counts, final membranes, output events, synaptic ops); "
        f"accuracy {report['accuracy']:.2%}",
        f"{report['workers']} workers, {report['seconds']:.1f} s, "
        f"{report['images_per_second']:.1f} images/s; cycles per image {cycles['mean']:,.0f} "
        f"(min {cycles['min']:,}, max {cycles['max']:,})",
    ]
    for m in report["mismatches"][:20]:
        lines.append(f"MISMATCH image {m['index']} (position {m['position']}): "
                     f"{', '.join(m['differs'])}; golden {m['golden']}, rtl {m['rtl']}; "
                     f"replay: {m['replay']}")
    if len(report["mismatches"]) > 20:
        lines.append(f"... and {len(report['mismatches']) - 20} more (see --json)")
    return "\n".join(lines)
