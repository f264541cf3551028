"""Where a chip's cycles go: each request the driver sends for an image, and its mesh cycles.

:func:`chip_cycle_figures` runs bundled MNIST images of a shipped model through the driver over
a chip profile's RTL (the C++ harness, :class:`~spikefab.sim.link_fast.FastTransport`: one
clock, the link delivering a byte per cycle, as in ``mnist_figures`` and ``spikefab demo``),
with every frame exchanged alone, so that the harness's count of the cycles each request took
(from its first byte in to its answer's last byte out) belongs to one command. The counts are
summed per command and divided by the images. Every result is checked against the golden model.

Synaptic ops per cycle is the issue-22 figure ("link included"): an image's ops over all its
cycles. ``RUN`` (or ``ENCODE``) alone is the figure the chip would reach if every other request
(RESET's clearing, OUTPUTS, READ, the counters) cost nothing, so it bounds what faster
clearing and reporting can give.

``python -m spikefab.sim.chip_cycles [--profiles icebreaker,ulx3s] [--models ...]``
prints the table of BENCHMARKS.md.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..hdl.abi import Command

__all__ = ["FrameByFrame", "chip_cycle_figures", "chip_cycle_table"]

_END = b"\xc0"


class FrameByFrame:
    """A transport over a simulated link that sends every frame alone and records, per frame,
    its command, its bytes, the cycles the link took for it and its payload (``records``)."""

    def __init__(self, inner):
        self.inner, self.window, self.records = inner, inner.window, []

    def exchange(self, data: bytes) -> bytes:
        from ..firmware.protocol import SlipDecoder, parse_body
        answers = []
        for part in data.split(_END):
            if not part:
                continue
            frame = part + _END
            (body, error), = SlipDecoder().feed(frame)
            _, code, payload = parse_body(body, error)
            before = self.inner.link.cycles
            answers.append(self.inner.exchange(frame))
            self.records.append((Command(code).name, len(frame),
                                 self.inner.link.cycles - before, payload))
        return b"".join(answers)

    def close(self):
        self.inner.close()


def chip_cycle_figures(profile: str, model: str, *, images: int = 10,
                       seed: int = 0) -> dict:
    """``images`` bundled images of ``model`` on ``profile``'s chip: cycles, bytes and requests
    per image for each command, synaptic ops per image, and whether the outputs, final
    membranes and synaptic ops equal the golden model's (a mismatch raises AssertionError).
    ``counted_per_image`` is the chip's own cycle count (STATUS) over the run, per image."""
    from ..firmware.driver import Link, LinkChip
    from ..firmware.mnist import bundled_slice
    from ..firmware.protocol import parse_run
    from ..firmware.run import load_network
    from ..hdl.profiles import get_profile
    from .encoding import chip_inputs
    from .golden_chip import GoldenChip
    from .link_fast import FastTransport
    chip_profile = get_profile(profile)
    image, steps = load_network(model, profile=profile, seed=seed)
    data = bundled_slice()
    inputs = chip_inputs(data.images[:images], steps, seed, data.indices[:images],
                         encoder=image.encoder)
    golden = GoldenChip(chip_profile.info())
    golden.load(image)
    want = golden.run(inputs)
    with FastTransport(chip_profile) as fast:
        transport = FrameByFrame(fast)
        chip = LinkChip(Link(transport), target="sim")
        chip.load(image)
        del transport.records[:]
        got = chip.run(inputs)
    assert got.sops == want.sops and np.array_equal(got.final_v, want.final_v) and all(
        sorted(a) == sorted(b) for a, b in zip(got.outputs, want.outputs)), \
        f"{model} on {profile}: the RTL differs from the golden model (seed {seed})"
    cycles, sent, count = Counter(), Counter(), Counter()
    runs = []                  # (input events, cycles) of each RUN request
    for name, size, spent, payload in transport.records:
        cycles[name] += spent
        sent[name] += size
        count[name] += 1
        if name == "RUN":
            runs.append((len(parse_run(payload)[1]), spent))
    total = sum(cycles.values())
    main = max(cycles, key=cycles.get)
    return {
        "profile": profile, "model": model, "steps": steps, "images": images,
        "lanes": chip_profile.tiles[chip_profile.host].lanes,
        "commands": {name: {"requests": count[name] / images, "cycles": cycles[name] / images,
                            "bytes": sent[name] / images}
                     for name in sorted(cycles, key=cycles.get, reverse=True)},
        "cycles_per_image": total / images, "counted_per_image": got.cycles / images,
        "sops_per_image": want.sops / images,
        "ops_per_cycle": want.sops / total, "main_command": main,
        "main_ops_per_cycle": want.sops / cycles[main], "run_fit": _fit(runs),
    }


def _fit(runs):
    """RUN's cycles as ``per_event`` x its input events + ``per_request`` (each of the
    driver's RUNs runs one tick), least squares, with the worst residual; None without RUNs
    of two different sizes."""
    if len({events for events, _ in runs}) < 2:
        return None
    events, spent = np.array(runs, float).T
    (per_event, per_request), *_ = np.linalg.lstsq(
        np.stack([events, np.ones_like(events)], axis=1), spent, rcond=None)
    worst = float(np.abs(per_event * events + per_request - spent).max())
    return {"per_event": float(per_event), "per_request": float(per_request),
            "requests": len(runs), "worst": worst}


def chip_cycle_table(rows: list[dict]) -> str:
    lines = ["| chip, model (T) | cycles per image, by command (requests per image when not 1) "
             "| total | synaptic ops | ops per cycle | ops per cycle of the main command alone |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        parts = ", ".join(f"{name} {c['cycles']:,.0f}"
                          + (f" ({c['requests']:g})" if c["requests"] != 1 else "")
                          for name, c in r["commands"].items())
        lines.append(f"| {r['profile']} ({r['lanes']} lanes), {r['model']} ({r['steps']}) | "
                     f"{parts} | {r['cycles_per_image']:,.0f} | {r['sops_per_image']:,.0f} | "
                     f"{r['ops_per_cycle']:.2f} | {r['main_command']}: "
                     f"{r['main_ops_per_cycle']:.2f} |")
    for r in rows:
        if r["run_fit"]:
            f = r["run_fit"]
            lines.append(f"\n{r['profile']}, {r['model']}: a RUN costs {f['per_event']:.1f} "
                         f"cycles per input event + {f['per_request']:.0f} (least squares over "
                         f"{f['requests']} RUNs of one tick each; worst residual "
                         f"{f['worst']:.0f} cycles)")
    return "\n".join(lines)


def main(argv=None) -> None:
    """The table of BENCHMARKS.md ("Where a chip's cycles go")."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m spikefab.sim.chip_cycles",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", default="icebreaker,ulx3s")
    parser.add_argument("--models", default="mnist-fast,mnist-accurate")
    parser.add_argument("--images", type=int, default=10)
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error(f"--images must be at least 1, not {args.images}")
    try:
        rows = [chip_cycle_figures(p, m, images=args.images)
                for p in args.profiles.split(",") for m in args.models.split(",")]
    except ValueError as exc:   # an unknown profile or model, or a model too big for a chip
        parser.error(str(exc))
    print(chip_cycle_table(rows))


if __name__ == "__main__":
    main()
