"""How fast a board runs a shipped model, and where the time goes: the UART-accurate simulation.

:func:`board_timing_figures` runs bundled MNIST images through the driver over the board's chip
(its profile, on one clock) behind the board's UART at its divisor, with every bit of every
request and answer on the wire at the baud rate. The clock, divisor, receive queue and link
timeout come from the board's top (``boards/top.py``: ``board_top``), so the figures follow the
board definitions. Two hosts:

* one at a time (:class:`~spikefab.sim.link_uart.UartTransport`): every request sent alone and
  its answer waited for, as a board's serial transport sends requests that are not streamed;
* streamed (:class:`~spikefab.sim.link_uart.UartLineTransport`): the driver over the line as
  over a board's ``SerialTransport``, whole-image ENCODEs sent ahead (``Link.stream``) as far as
  the chip's queue takes them (``ChipInfo.rx_queue``: none on a chip without one, which then
  goes one at a time all the same).

The host is ideal: no time passes between an answer's last stop bit and what the host sends
next (a real USB-serial adapter and its operating system add latency per request, not
modelled).

An image's time is that of the requests the driver sends for it (``LinkChip.run``: to a chip
with the encoder, one ENCODE of its pixels that also clears the chip, runs the drain ticks and
answers with the outputs and membranes, and OUTPUTS for any more outputs; else RESET, a RUN of
its spikes per tick, the drain RUN, OUTPUTS and a READ of the output membranes): from the end
of the previous image's last answer (for the first, of the counter reads a run starts with,
which are not counted, nor those it ends with) to the end of its own last answer. It is split
into wire in (the host sending), wire out (the chip sending) and the chip alone (neither line
busy); streamed, the host sends while the chip works or answers, so both lines can be busy at
once (``overlap_ms``) and the three parts add up to more than the image's time. Every result is
checked against the golden model.
"""

from __future__ import annotations

import gc
import time
import warnings

import numpy as np

from ..boards.top import board_top
from ..hdl.abi import Command
from .link_uart import UartLineTransport, UartTransport, uart_build
from .runner import SimulationError

__all__ = ["BOARD_TIMING_MODELS", "BOARD_TIMING_HOSTS", "board_uart_build",
           "board_timing_figures", "board_timing_table"]

#: The shipped models the board table covers (``mnist-wide`` needs a generated chip).
BOARD_TIMING_MODELS = ("mnist-fast", "mnist-accurate")
#: The hosts the table covers: :func:`board_timing_figures`'s ``stream`` False and True.
BOARD_TIMING_HOSTS = ("one at a time", "streamed")


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


#: The requests that begin an image: the one that clears the chip.
_CLEARING = (Command.RESET, Command.ENCODE)


def _image_spans(records, marks, images: int):
    """Each image's records as ``(start, end)`` indices into ``records``, and whether they
    are each image's own (else only the run's: ``[(start, end)]``).

    ``marks`` are the number of records before the run and after each image. The run's
    records begin with the first that clears the chip (RESET, or an ENCODE), after the counter
    reads (READ, STATUS) a run starts with, and end with its last image's. Within them an
    image begins with its clearing request: a run of ``images`` such requests splits there.
    The driver may exchange a batch of an image's successors before it reports the image
    done (``Link.stream`` over a transport without ``read_frame`` hands it 16 ENCODEs at a
    time), so the marks split it only if no image's span is empty; with neither (an image run
    again, its outputs fetched), only the run's records are known."""
    start, end = marks[0], marks[-1]
    first = next((k for k in range(start, end) if records[k].command in _CLEARING), None)
    if first is None:
        raise SimulationError("a run went by with no request that clears the chip (RESET, "
                              "ENCODE): the driver runs images otherwise than board_timing "
                              "expects")
    starts = [k for k in range(first, end) if records[k].command in _CLEARING]
    if len(starts) == images:
        return list(zip(starts, starts[1:] + [end])), True
    spans = list(zip([first] + marks[1:-1], marks[1:]))
    if all(a < b for a, b in spans):
        return spans, True
    return [(first, end)], False


_COUNTS = ("cycles", "rx_busy", "tx_busy", "quiet")


def _span_counts(records, spans, cumulative: bool) -> list[dict]:
    """Per span: its cycles, line counts, bytes each way and requests. A
    :class:`~spikefab.sim.link_uart.LineExchange` (``cumulative`` False) holds its own
    request's counts; a :class:`~spikefab.sim.link_uart.LineFrame` holds the counts since the
    start as its frame ended, so a span's are those at its last frame less those at the frame
    before its first (the host, ideal, sends nothing between the two)."""
    counts = []
    for start, end in spans:
        part = records[start:end]
        if cumulative:
            if start == 0:
                raise SimulationError("an image's answers came first of all: nothing marks "
                                      "when its time began")
            span = {key: getattr(records[end - 1], key) - getattr(records[start - 1], key)
                    for key in _COUNTS}
        else:
            span = {key: sum(getattr(e, key) for e in part) for key in _COUNTS}
        span["sent"] = sum(e.sent for e in part)
        span["received"] = sum(e.received for e in part)
        span["requests"] = len(part)
        counts.append(span)
    return counts


def board_timing_figures(board: str, model: str, *, images: int = 10,
                         baud: int = 3_000_000, first: int = 0, seed: int = 0,
                         profile: str | None = None, stream: bool = False) -> dict:
    """Images ``first`` .. ``first + images - 1`` of the bundled slice, with ``model`` compiled
    for ``board``'s chip (or ``profile``), through the UART-accurate simulation at ``baud``. The
    images go as ``spikefab run`` sends them (``firmware/run.py``: ``prepare``): as pixels (an
    ENCODE each) to a chip that draws a model's spikes itself, else as spikes (RUN's events).
    ``stream``: the driver over the line as over a board's serial port, the ENCODEs streamed
    (:class:`~spikefab.sim.link_uart.UartLineTransport`); else every request alone
    (:class:`~spikefab.sim.link_uart.UartTransport`).

    Returns the per-image means: clock cycles, seconds at the board's clock, images/s, and the
    split: ``wire_in_ms`` (host sending), ``wire_out_ms`` (chip sending), ``chip_ms`` (neither
    line busy), ``overlap_ms`` (both), bytes each way, requests; ``input`` (``"pixels"`` or
    ``"spikes"``); ``host`` (one of :data:`BOARD_TIMING_HOSTS`); ``link`` (what the driver's
    link did: ``LinkCounters``, retries and stray answers included); ``equals_golden`` (every
    prediction, output count, output event, final membrane and synaptic-op count equals the
    golden model's); ``sim_seconds`` (wall time of the run, load excluded)."""
    from ..firmware.driver import Link, LinkChip
    from ..firmware.run import prepare
    from .golden_chip import GoldenChip
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ValueError(f"images must be a positive integer, not {images!r}")
    if not isinstance(stream, bool):
        raise ValueError(f"stream must be True or False, not {stream!r}")
    build = board_uart_build(board, profile=profile, baud=baud)
    chip_profile = build.profile
    work = prepare(model=model, data=None, split="test", first=first, count=images, steps=None,
                   seed=seed, profile=chip_profile.name, board=None)
    image, steps, spikes = work.image, work.steps, work.spikes
    golden = GoldenChip(chip_profile.info())
    golden.load(image)
    want = golden.run(spikes)
    transport = UartLineTransport(build) if stream else UartTransport(build)
    with transport:
        records = transport.frames if stream else transport.exchanges
        chip = LinkChip(Link(transport), target=f"uart:{board}")
        chip.load(image)
        marks = [len(records)]
        start = time.perf_counter()
        got = chip.run(spikes, progress=lambda done, total: marks.append(len(records)))
        sim_seconds = time.perf_counter() - start
        spans, each = _image_spans(records, marks, images)
        spans = _span_counts(records, spans, cumulative=stream)
    divisor, clock_hz = build.divisor, build.clock_hz
    totals = {key: sum(span[key] for span in spans) for key in spans[0]}
    bit_cycles = 10 * divisor
    # Each line carries one byte at a time, 10 bit times each: the host's bytes never overlap
    # (a streamed request waits behind the rest), nor are any lost or counted twice.
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
        "clock_hz": clock_hz, "host": BOARD_TIMING_HOSTS[stream],
        "rx_queue": chip_profile.rx_queue,
        "cycles_per_image": per["cycles"],
        # None: the images' requests did not split image by image.
        "cycles_per_image_range": (min(c["cycles"] for c in spans),
                                   max(c["cycles"] for c in spans)) if each else None,
        "seconds_per_image": per["cycles"] / clock_hz,
        "images_per_second": clock_hz / per["cycles"],
        "wire_in_ms": per["rx_busy"] * ms, "wire_out_ms": per["tx_busy"] * ms,
        "chip_ms": per["quiet"] * ms,
        # Both lines busy at once: never while the driver sends one frame at a time.
        "overlap_ms": (per["rx_busy"] + per["tx_busy"] + per["quiet"] - per["cycles"]) * ms,
        "bytes_in_per_image": per["sent"], "bytes_out_per_image": per["received"],
        "requests_per_image": per["requests"],
        "input": "pixels" if any(records[k].command == Command.ENCODE
                                 for k in range(marks[0], marks[-1])) else "spikes",
        "link": got.link,
        "correct": int((got.predictions == work.labels).sum()),
        "equals_golden": equal, "sim_seconds": sim_seconds,
    }


def board_timing_table(rows: list[dict]) -> str:
    """:func:`board_timing_figures` rows as a Markdown table."""
    lines = ["| board (clock, baud) | model (T), input | images | host | cycles/image | "
             "ms/image | images/s | wire in ms | chip ms | wire out ms | both lines ms | "
             "bytes in / out per image | requests/image | RTL == golden |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['board']} ({r['clock_hz'] / 1e6:g} MHz, {r['baud'] / 1e6:g} Mbaud: "
            f"{r['divisor']} cycles/bit) | {r['model']} ({r['steps']}), {r['input']} | "
            f"{r['images']} | {r.get('host', BOARD_TIMING_HOSTS[0])} | "
            f"{r['cycles_per_image']:,.0f} | {r['seconds_per_image'] * 1e3:.3f} | "
            f"{r['images_per_second']:,.1f} | {r['wire_in_ms']:.3f} | {r['chip_ms']:.3f} | "
            f"{r['wire_out_ms']:.3f} | {r['overlap_ms']:.3f} | {r['bytes_in_per_image']:,.0f} / "
            f"{r['bytes_out_per_image']:,.0f} | {r['requests_per_image']:.1f} | "
            f"{r['equals_golden']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    """``python -m spikefab.sim.board_timing``: the table for every board, model and host."""
    import argparse
    from ..boards.top import BOARDS
    parser = argparse.ArgumentParser(prog="python -m spikefab.sim.board_timing",
                                     description=main.__doc__)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--baud", type=int, default=3_000_000)
    parser.add_argument("--boards", default=",".join(BOARDS))
    parser.add_argument("--models", default=",".join(BOARD_TIMING_MODELS))
    names = [host.replace(" ", "-") for host in BOARD_TIMING_HOSTS]
    parser.add_argument("--hosts", default=",".join(names),
                        help=f"some of {','.join(names)} (default: both)")
    args = parser.parse_args(argv)
    hosts = args.hosts.split(",")
    unknown = [h for h in hosts if h not in names]
    if unknown:
        parser.error(f"--hosts takes some of {','.join(names)}; not {','.join(unknown)}")
    rows = [board_timing_figures(board, model, images=args.images, baud=args.baud,
                                 stream=host == names[1])
            for board in args.boards.split(",") for model in args.models.split(",")
            for host in hosts]
    print(board_timing_table(rows))


if __name__ == "__main__":
    main()
