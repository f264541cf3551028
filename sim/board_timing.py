"""How fast a board runs a shipped model, and where the time goes: the UART-accurate simulation.

:func:`board_timing_figures` runs bundled MNIST images through the driver over
:class:`~spikefab.sim.link_uart.UartTransport`: the board's chip (its profile, on one clock)
behind the board's UART at its divisor, with every bit of every request and answer on the
wire at the baud rate, one frame at a time as the driver sends them to a board. The clock,
divisor, receive queue and link timeout come from the board's top (``boards/top.py``:
``board_top``), so the figures follow the board definitions. The host is ideal: no time
passes between an answer's last stop bit and the next request's start bit (a real USB-serial
adapter and its operating system add latency per request, not modelled).

An image's time is that of the requests the driver sends for it (``LinkChip.run``: to a chip
with the encoder, one ENCODE of its pixels that also clears the chip, runs the drain ticks and
answers with the outputs and membranes, and OUTPUTS for any more outputs; else RESET, a RUN of
its spikes per tick, the drain RUN, OUTPUTS and a READ of the output membranes), split into
wire in (the host sending), wire out (the chip sending) and the chip alone (neither line busy);
the counter reads a run starts and ends with are not counted. Every result is checked against
the golden model.
"""

from __future__ import annotations

import gc
import time
import warnings

import numpy as np

from ..boards.top import board_top
from ..hdl.abi import Command
from .link_uart import UartTransport, uart_build
from .runner import SimulationError

__all__ = ["BOARD_TIMING_MODELS", "board_uart_build", "board_timing_figures",
           "board_timing_table"]

#: The shipped models the board table covers (``mnist-wide`` needs a generated chip).
BOARD_TIMING_MODELS = ("mnist-fast", "mnist-accurate")


def board_uart_build(board: str, *, profile: str | None = None, baud: int = 3_000_000):
    """The UART-accurate build of ``board`` (``boards/top.py``'s ``BOARDS``): its top's
    :class:`~spikefab.hdl.system.ChipSystem` behind its UART at ``baud``, with the top's clock
    (the PLL's), receive queue and link timeout; ``profile`` another chip on that board (tests
    use ``tiny``). ``build.board`` and ``build.profile`` name them. ValueError for an unknown
    board or a baud rate the board's clock cannot make."""
    from amaranth.hdl import UnusedElaboratable
    top = board_top(board, profile=profile, baudrate=baud)
    build = uart_build(top.system, divisor=top.divisor, clock_hz=top.clock_mhz * 1e6,
                       rx_fifo_depth=top.rx_fifo_depth,
                       label=f"uart-{board}-{top.profile.name}-{top.divisor}")
    build.board, build.profile, build.baud = board, top.profile, baud
    # Only the top's ChipSystem is elaborated (in UartPort), never the top: drop it without
    # Amaranth's warning (an elaboratable refers to itself, so only the collector frees it).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        del top
        gc.collect()
    return build


def _image_spans(exchanges, marks):
    """Each image's requests (``marks``: the number of exchanges before the run and after
    each image), without the counter reads (READ, STATUS) a run starts with: an image's own
    requests begin with the one that clears the chip (RESET, or an ENCODE)."""
    spans = []
    for start, end in zip(marks, marks[1:]):
        requests = exchanges[start:end]
        first = next((k for k, e in enumerate(requests)
                      if e.command not in (Command.READ, Command.STATUS)), None)
        if first is None:
            raise SimulationError("an image went by with no request but reads: the driver runs "
                                  "images otherwise than board_timing expects")
        spans.append(requests[first:])
    return spans


def board_timing_figures(board: str, model: str, *, images: int = 10,
                         baud: int = 3_000_000, first: int = 0, seed: int = 0,
                         profile: str | None = None) -> dict:
    """Images ``first`` .. ``first + images - 1`` of the bundled slice, with ``model`` compiled
    for ``board``'s chip (or ``profile``), through the UART-accurate simulation at ``baud``. The
    images go as ``spikefab run`` sends them (``firmware/run.py``: ``prepare``): as pixels (an
    ENCODE each) to a chip that draws a model's spikes itself, else as spikes (RUN's events).

    Returns the per-image means: clock cycles, seconds at the board's clock, images/s, and the
    split: ``wire_in_ms`` (host sending), ``wire_out_ms`` (chip sending), ``chip_ms`` (neither
    line busy), bytes each way, requests; ``input`` (``"pixels"`` or ``"spikes"``);
    ``equals_golden`` (every prediction, output count, output event, final membrane and
    synaptic-op count equals the golden model's); ``sim_seconds`` (wall time of the run, load
    excluded)."""
    from ..firmware.driver import Link, LinkChip
    from ..firmware.run import prepare
    from .golden_chip import GoldenChip
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ValueError(f"images must be a positive integer, not {images!r}")
    build = board_uart_build(board, profile=profile, baud=baud)
    chip_profile = build.profile
    work = prepare(model=model, data=None, split="test", first=first, count=images, steps=None,
                   seed=seed, profile=chip_profile.name, board=None)
    image, steps, spikes = work.image, work.steps, work.spikes
    golden = GoldenChip(chip_profile.info())
    golden.load(image)
    want = golden.run(spikes)
    with UartTransport(build) as transport:
        chip = LinkChip(Link(transport), target=f"uart:{board}")
        chip.load(image)
        marks = [len(transport.exchanges)]
        start = time.perf_counter()
        got = chip.run(spikes, progress=lambda done, total: marks.append(
            len(transport.exchanges)))
        sim_seconds = time.perf_counter() - start
        spans = _image_spans(transport.exchanges, marks)
    divisor, clock_hz = build.divisor, build.clock_hz
    totals = {key: sum(getattr(e, key) for span in spans for e in span)
              for key in ("cycles", "rx_busy", "tx_busy", "quiet", "sent", "received")}
    bit_cycles = 10 * divisor
    if (totals["rx_busy"] != totals["sent"] * bit_cycles
            or totals["tx_busy"] != totals["received"] * bit_cycles):
        raise SimulationError(f"the UART harness counted {totals['rx_busy']} and "
                              f"{totals['tx_busy']} busy cycles for {totals['sent']} and "
                              f"{totals['received']} bytes at {divisor} cycles per bit")
    equal = bool(
        np.array_equal(got.predictions, want.predictions)
        and np.array_equal(got.counts, want.counts)
        and np.array_equal(got.final_v, want.final_v) and got.sops == want.sops
        and all(sorted(a) == sorted(b) for a, b in zip(got.outputs, want.outputs)))
    per = {key: value / images for key, value in totals.items()}
    ms = 1e3 / clock_hz
    return {
        "board": board, "profile": chip_profile.name, "model": model, "steps": steps,
        "images": images, "first": first, "seed": seed, "baud": baud, "divisor": divisor,
        "clock_hz": clock_hz,
        "cycles_per_image": per["cycles"],
        "cycles_per_image_range": (min(sum(e.cycles for e in s) for s in spans),
                                   max(sum(e.cycles for e in s) for s in spans)),
        "seconds_per_image": per["cycles"] / clock_hz,
        "images_per_second": clock_hz / per["cycles"],
        "wire_in_ms": per["rx_busy"] * ms, "wire_out_ms": per["tx_busy"] * ms,
        "chip_ms": per["quiet"] * ms,
        # Both lines busy at once: never while the driver sends one frame at a time.
        "overlap_ms": (per["rx_busy"] + per["tx_busy"] + per["quiet"] - per["cycles"]) * ms,
        "bytes_in_per_image": per["sent"], "bytes_out_per_image": per["received"],
        "requests_per_image": sum(len(s) for s in spans) / images,
        "input": "pixels" if any(e.command == Command.ENCODE for s in spans for e in s)
                 else "spikes",
        "correct": int((got.predictions == work.labels).sum()),
        "equals_golden": equal, "sim_seconds": sim_seconds,
    }


def board_timing_table(rows: list[dict]) -> str:
    """:func:`board_timing_figures` rows as a Markdown table."""
    lines = ["| board (clock, baud) | model (T), input | images | cycles/image | ms/image | "
             "images/s | wire in ms | chip ms | wire out ms | bytes in / out per image | "
             "requests/image | RTL == golden |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['board']} ({r['clock_hz'] / 1e6:g} MHz, {r['baud'] / 1e6:g} Mbaud: "
            f"{r['divisor']} cycles/bit) | {r['model']} ({r['steps']}), {r['input']} | "
            f"{r['images']} | "
            f"{r['cycles_per_image']:,.0f} | {r['seconds_per_image'] * 1e3:.3f} | "
            f"{r['images_per_second']:,.1f} | {r['wire_in_ms']:.3f} | {r['chip_ms']:.3f} | "
            f"{r['wire_out_ms']:.3f} | {r['bytes_in_per_image']:,.0f} / "
            f"{r['bytes_out_per_image']:,.0f} | {r['requests_per_image']:.1f} | "
            f"{r['equals_golden']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    """``python -m spikefab.sim.board_timing``: the table for every board and model."""
    import argparse
    from ..boards.top import BOARDS
    parser = argparse.ArgumentParser(prog="python -m spikefab.sim.board_timing",
                                     description=main.__doc__)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--baud", type=int, default=3_000_000)
    parser.add_argument("--boards", default=",".join(BOARDS))
    parser.add_argument("--models", default=",".join(BOARD_TIMING_MODELS))
    args = parser.parse_args(argv)
    rows = [board_timing_figures(board, model, images=args.images, baud=args.baud)
            for board in args.boards.split(",") for model in args.models.split(",")]
    print(board_timing_table(rows))


if __name__ == "__main__":
    main()
