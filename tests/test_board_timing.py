"""The UART-accurate simulation of a board (sim/link_uart.py, sim/harness/uart_main.cpp) and its
timing figures (sim/board_timing.py).

The chip behind its board's UART must answer every request as the golden LinkModel does, a bad
CRC and a half frame left to the board's inter-byte timeout included, with no byte lost on
either line; each line must be busy exactly 10 bit times of the board's divisor per byte it
carried, a request must take at least the bit times of its bytes both ways, and the chip's own
clock (STATUS) must have counted the harness's cycles. The same holds for a host that drives
the line as a board's serial port (UartLineTransport), sending requests ahead into the chip's
queue: then whole-image ENCODEs streamed by the driver equal golden in fewer cycles than one at
a time, and a read with nothing to come returns None at its timeout. Then MNIST images of the
smallest shipped model run over it equal to the golden model, and the figures add up.
"""

import dataclasses
import random
from collections import deque

import numpy as np
import pytest

from spikefab.boards.top import BOARDS
from spikefab.firmware.compiler import compile_model
from spikefab.firmware.driver import Link, LinkChip
from spikefab.firmware.model import random_model
from spikefab.firmware.protocol import SlipDecoder, frame, parse_body
from spikefab.hdl.abi import (Command, LinkStatus, Region, Register, Status, pack_event_word,
                              route_entry)
from spikefab.sim.board_timing import board_timing_figures, board_timing_table, board_uart_build
from spikefab.sim.encoding import Pixels
from spikefab.sim.golden_chip import GoldenChip
from spikefab.sim.link_fast import FastLink
from spikefab.sim.link_model import LinkModel
from spikefab.sim.link_rtl import POWER_ON_RESET, START_DELAY
from spikefab.sim.link_uart import (UartHarnessBuild, UartLineTransport, UartLink,
                                    UartTransport)
from spikefab.sim.runner import SimulationError

from conftest import raises_in_constructor, record_checked

BITS = 10   # 8N1


@pytest.fixture(scope="module", params=["icebreaker", "ulx3s-85f"])
def tiny_build(request):
    """The ``tiny`` chip behind each board's UART (its divisor, queue and timeout)."""
    return board_uart_build(request.param, profile="tiny")


def _address(tile, region, offset):
    return bytes([tile, region]) + offset.to_bytes(4, "little")


def _requests(info, rng):
    """A session that makes a spike reach the host: ``(what, bytes)`` of each request."""
    wb = info.word_bytes
    seq = iter(range(1, 256))

    def request(command, payload=b""):
        return frame(next(seq), command, payload)

    def words(values):
        return b"".join((v & ((1 << (8 * wb)) - 1)).to_bytes(wb, "little") for v in values)

    tile = info.tiles[0]
    rows = tile.neurons // tile.lanes
    axon = rng.randrange(tile.axons)
    weights = [rng.randrange(1 << (8 * tile.lanes)) & int("7f" * tile.lanes, 16)
               for _ in range(rows)]   # positive int8 lanes: the neurons spike
    bad = bytearray(request(Command.WRITE, _address(0, Region.MEMBRANE, 0) + words([1234])))
    bad[-3] ^= 0x40   # a CRC byte (before the closing END)
    return [
        ("INFO", request(Command.INFO)),
        ("WRITE threshold", request(Command.WRITE, _address(0, Region.REGISTER,
                                                             Register.THRESHOLD) + words([20]))),
        ("WRITE a synapse row", request(Command.WRITE, _address(0, Region.SYNAPSE, axon * rows)
                                        + words(weights))),
        ("WRITE routes to the host", request(Command.WRITE, _address(0, Region.ROUTE_INDEX, 0)
                                             + words([route_entry(to_host=True)]
                                                     * tile.neurons))),
        ("RUN one tick", request(Command.RUN, (1).to_bytes(2, "little") + b"".join(
            pack_event_word(0, 0, axon).to_bytes(2, "little") for _ in range(3)))),
        ("OUTPUTS", request(Command.OUTPUTS, (64).to_bytes(2, "little"))),
        ("READ membranes", request(Command.READ, _address(0, Region.MEMBRANE, 0)
                                   + tile.neurons.to_bytes(2, "little"))),
        ("bad CRC", bytes(bad)),
        ("READ membranes again", request(Command.READ, _address(0, Region.MEMBRANE, 0)
                                         + (4).to_bytes(2, "little"))),
        ("STATUS", request(Command.STATUS)),
    ]


def _frames(data):
    """``(seq, status, payload)`` of every frame in ``data``."""
    return [parse_body(body, error) for body, error in SlipDecoder().feed(data)]


def test_the_uart_link_answers_like_the_link_model(tiny_build, base_seed):
    build = tiny_build
    seed = base_seed + 71
    model = LinkModel(build.info)
    requests = _requests(build.info, random.Random(seed))
    divisor, outputs = build.divisor, 0
    with UartLink(build) as link:
        for what, data in requests:
            before = (link.cycles, link.rx_busy, link.tx_busy, link.quiet)
            answer = link.exchange(data)
            want = model.receive(data)
            cycles, rx_busy, tx_busy, quiet = (now - then for now, then in zip(
                (link.cycles, link.rx_busy, link.tx_busy, link.quiet), before))
            where = f"{build.board}, seed {seed}, {what}"
            got_frames, want_frames = _frames(answer), _frames(want)
            assert len(got_frames) == len(want_frames) == 1, (where, answer.hex())
            (seq, status, payload), = got_frames
            (_, want_status, want_payload), = want_frames
            if what == "OUTPUTS":
                assert status == want_status == Status.OK, where
                assert sorted(payload[k:k + 4] for k in range(0, len(payload), 4)) == sorted(
                    want_payload[k:k + 4] for k in range(0, len(want_payload), 4)), where
                outputs = len(payload) // 4
            elif what == "STATUS":
                chip = LinkStatus.decode(payload)
                assert dataclasses.replace(chip, cycles=0) == LinkStatus.decode(want_payload)
                assert chip.line_errors == 0, f"{where}: the UART lost bytes"
                # The chip's own clock counted the harness's cycles: it took STATUS's count
                # after the request's bytes went in and before its answer ended.
                sent = before[0] + (len(data) * BITS - 1) * divisor + START_DELAY
                assert sent <= chip.cycles <= link.cycles + START_DELAY + POWER_ON_RESET, (
                    where, before[0], chip.cycles, link.cycles)
            else:
                assert got_frames == want_frames, (where, answer.hex(), want.hex())
            if what == "bad CRC":
                assert status == Status.CRC, where
            # Each line busy 10 bit times per byte it carried; the chip answers only after the
            # whole request, so the lines are never busy at once.
            assert rx_busy == len(data) * BITS * divisor, where
            assert tx_busy == len(answer) * BITS * divisor, where
            assert cycles == rx_busy + tx_busy + quiet, where
            assert cycles >= (len(data) + len(answer)) * BITS * divisor, where
            assert quiet > 0, where
    assert outputs > 0, f"seed {seed}: the tick made no spike reach the host: the check " \
                        f"proves too little"
    record_checked(f"uart-link-{build.board}", uart_exchanges=len(requests))


def test_fast_link_drives_the_uart_harness_and_one_frame_goes_at_a_time():
    """The harness speaks sim/link_rtl.py's messages (FastLink, unchanged, gets the answers);
    a half frame is dropped at the board's inter-byte timeout; two frames in one exchange
    are refused, as a UART would lose the second."""
    build = board_uart_build("icebreaker", profile="tiny")
    model = LinkModel(build.info)
    half = frame(2, Command.READ, _address(0, Region.MEMBRANE, 0) + (2).to_bytes(2, "little"))
    with FastLink(UartHarnessBuild(build)) as link:
        for data in (frame(1, Command.INFO), half[:len(half) // 2]):
            assert link.exchange(data) == model.receive(data)
        link.idle(2 << build.timeout_log2)
        model.idle()
        status = frame(3, Command.STATUS)
        got, = _frames(link.exchange(status))
        want, = _frames(model.receive(status))
        assert got[:2] == want[:2] == (3, Status.OK)
        assert dataclasses.replace(LinkStatus.decode(got[2]), cycles=0) == \
            LinkStatus.decode(want[2])
    with UartLink(build) as link:
        with pytest.raises(ValueError, match="2 frames in one exchange: a UART link carries "
                                             "one frame at a time"):
            link.exchange(frame(1, Command.INFO) + frame(2, Command.STATUS))


def _compare(got, want, what, where):
    """A chip's answer frame against the link model's, as the one-at-a-time test compares
    them: OUTPUTS's events in any order, STATUS but its clock (no byte lost on the line)."""
    (seq, status, payload), = got
    (want_seq, want_status, want_payload), = want
    if what == "OUTPUTS":
        assert (seq, status) == (want_seq, want_status) == (seq, Status.OK), where
        assert sorted(payload[k:k + 4] for k in range(0, len(payload), 4)) == sorted(
            want_payload[k:k + 4] for k in range(0, len(want_payload), 4)), where
        return len(payload) // 4
    if what == "STATUS":
        chip = LinkStatus.decode(payload)
        assert dataclasses.replace(chip, cycles=0) == LinkStatus.decode(want_payload), where
        assert chip.line_errors == 0, f"{where}: the UART lost bytes"
    else:
        assert got == want, where
    return 0


def test_the_line_transport_answers_like_the_link_model_with_requests_sent_ahead(
        tiny_build, base_seed):
    """Requests sent ahead as Link.stream sends them (the bytes waiting behind the request the
    chip holds fit its queue) are answered, in order, as the link model answers them one at a
    time; the host's bytes go out one after the other (rx busy exactly 10 bit times per byte
    sent, none lost: STATUS counts no line error), and the host sends while the chip answers
    (both lines busy at once)."""
    build = tiny_build
    seed = base_seed + 72
    model = LinkModel(build.info)
    requests = _requests(build.info, random.Random(seed))
    room = build.info.rx_queue
    assert room, "the tiny chip has a queue: the check needs one"
    divisor, outputs, most_waiting = build.divisor, 0, 0
    with UartLineTransport(build) as transport:
        link, waiting, k = transport.link, deque(), 0
        while k < len(requests) or waiting:
            while k < len(requests) and (not waiting or sum(
                    len(data) for _, data in list(waiting)[1:]) + len(requests[k][1]) <= room):
                transport.send(requests[k][1])
                waiting.append(requests[k])
                k += 1
            most_waiting = max(most_waiting, len(waiting))
            what, data = waiting.popleft()
            where = f"{build.board}, seed {seed}, {what}"
            got = transport.read_frame(transport.timeout)
            assert got is not None, f"{where}: no answer in {transport.timeout} s"
            outputs += _compare([parse_body(*got)], _frames(model.receive(data)), what, where)
            record = transport.frames[-1]
            assert (record.command, record.sent) == (data[2], len(data)), where
        sent = sum(len(data) for _, data in requests)
        received = sum(f.received for f in transport.frames)
        assert link.rx_busy == sent * BITS * divisor, "two bytes at once on the host's line"
        assert link.tx_busy == received * BITS * divisor
        assert link.rx_busy + link.tx_busy + link.quiet > link.cycles, \
            "the host never sent while the chip answered: nothing was streamed"
    assert most_waiting >= 3, f"at most {most_waiting} requests in flight: too few sent ahead"
    assert outputs > 0, f"seed {seed}: the tick made no spike reach the host: the check " \
                        f"proves too little"
    record_checked(f"uart-line-{build.board}", uart_line_requests=len(requests))


def _pixels(seed, steps, images, inputs):
    """Images for the chip's encoder: a third of the pixels lit, a few at 255."""
    rng = np.random.default_rng(seed)
    images_ = rng.integers(1, 256, size=(images, inputs)) * (rng.random((images, inputs)) < 0.3)
    return Pixels.of(images_.astype(np.uint8), steps, seed)


def test_streamed_encodes_over_the_uart_equal_golden_in_fewer_cycles(base_seed):
    """Whole-image ENCODEs on the tiny chip (a 64-byte queue): the driver over the line streams
    them, the next sent while the chip runs one; the results equal golden's as one at a time,
    in fewer cycles. Loading, one request at a time either way, takes the same cycles over the
    line as by exchanges."""
    seed = base_seed + 74
    build = board_uart_build("icebreaker", profile="tiny")
    info = build.info
    assert info.encoder and info.rx_queue == 64
    image = compile_model(random_model([40, 12, 6], seed=seed), "tiny")
    pixels = _pixels(seed, 6, 8, image.inputs)
    golden = GoldenChip(info)
    golden.load(image)
    want = golden.run(pixels)
    assert want.counts.sum() > 0, f"the network never answered (seed {seed})"
    runs = {}
    for name, transport in (("one at a time", UartTransport(build)),
                            ("streamed", UartLineTransport(build))):
        with transport:
            link = transport.link
            chip = LinkChip(Link(transport), target="uart")
            chip.load(image)
            loaded = link.cycles
            got = chip.run(pixels)
            runs[name] = (loaded, link.cycles - loaded,
                          link.rx_busy + link.tx_busy + link.quiet - link.cycles)
            assert np.array_equal(got.predictions, want.predictions), (name, seed)
            assert np.array_equal(got.counts, want.counts), (name, seed)
            assert np.array_equal(got.final_v, want.final_v), (name, seed)
            assert got.sops == want.sops, (name, seed)
            assert all(sorted(a) == sorted(b) for a, b in zip(got.outputs, want.outputs))
            assert got.link["retries"] == got.link["stray"] == 0, (name, got.link)
            if name == "streamed":
                sent = sum(f.sent for f in transport.frames)
                assert link.rx_busy == sent * BITS * build.divisor, \
                    "two bytes at once on the host's line"
    (loaded, one, overlap_one), (loaded_line, streamed, overlap) = runs.values()
    assert loaded_line == loaded, "one request at a time, the line took other cycles"
    assert overlap_one == 0 and overlap > 0, runs
    assert streamed < one, f"seed {seed}: streamed took {streamed} cycles, one at a time {one}"
    record_checked("uart-stream", uart_streamed_images=len(pixels))


def test_a_read_with_nothing_to_come_times_out_in_simulated_time():
    """read_frame with no request outstanding returns None after its timeout at the board's
    clock, the line quiet; drain throws away an answer nobody read; exchanges need a settled
    line, and a line-level request after one takes its cycles as a board's would."""
    build = board_uart_build("icebreaker", profile="tiny")
    model = LinkModel(build.info)
    with UartLineTransport(build) as transport:
        link = transport.link
        for timeout in (2e-4, 0.0):
            before = (link.cycles, link.quiet)
            assert transport.read_frame(timeout) is None
            assert link.cycles - before[0] == link.quiet - before[1] \
                == round(timeout * build.clock_hz), timeout
        info = frame(1, Command.INFO)
        transport.send(info)
        assert transport.read_frame(0.0) is None   # no time passed: nothing came yet
        with pytest.raises(SimulationError, match="a REQUEST while the line is in use"):
            link.exchange(frame(2, Command.STATUS))
    with UartLineTransport(build) as transport:
        link = transport.link
        transport.send(info)
        want = model.receive(info)
        assert transport.drain(quiet=1e-4) == len(want), "the answer was not thrown away"
        assert transport.read_frame(1e-4) is None
        assert link.cycles >= len(info + want) * BITS * build.divisor \
            + round(1e-4 * build.clock_hz) * 2
        assert _frames(link.exchange(info)) == _frames(model.receive(info))


def test_mnist_images_over_the_uart_equal_golden_and_the_figures_add_up():
    r = board_timing_figures("icebreaker", "mnist-fast", images=2)
    assert r["equals_golden"], r
    clock_hz = BOARDS["icebreaker"][2] * 1e6   # the board's clock, 3 Mbaud from it
    assert r["clock_hz"] == clock_hz and r["divisor"] == round(clock_hz / 3e6) == 9
    bit_ms = 1e3 * r["divisor"] / r["clock_hz"]
    assert r["wire_in_ms"] == pytest.approx(r["bytes_in_per_image"] * BITS * bit_ms)
    assert r["wire_out_ms"] == pytest.approx(r["bytes_out_per_image"] * BITS * bit_ms)
    assert r["overlap_ms"] == 0
    assert r["chip_ms"] > 0
    assert (r["wire_in_ms"] + r["wire_out_ms"] + r["chip_ms"]) == pytest.approx(
        r["seconds_per_image"] * 1e3)
    assert r["cycles_per_image"] >= (r["bytes_in_per_image"] + r["bytes_out_per_image"]) \
        * BITS * r["divisor"]
    assert r["images_per_second"] == pytest.approx(r["clock_hz"] / r["cycles_per_image"])
    # RESET, a RUN per tick (the icebreaker chip has no encoder), the drain RUN, OUTPUTS and
    # the READ of the output membranes.
    assert r["input"] == "spikes" and r["requests_per_image"] >= r["steps"] + 4
    table = board_timing_table([r])
    assert "| icebreaker (27 MHz, 3 Mbaud: 9 cycles/bit) | mnist-fast (4), spikes | 2 |" in table
    record_checked("uart-mnist", uart_images=r["images"])


def test_board_timing_errors_are_named():
    with pytest.raises(ValueError, match="unknown board 'de10'; supported: icebreaker, "
                                         "ulx3s-85f"):
        board_timing_figures("de10", "mnist-fast", images=1)
    with raises_in_constructor(ValueError, "12000000 baud from 27 MHz"):   # the board's top
        board_timing_figures("icebreaker", "mnist-fast", images=1, baud=12_000_000)
    with pytest.raises(ValueError, match="images must be a positive integer, not 0"):
        board_timing_figures("icebreaker", "mnist-fast", images=0)
