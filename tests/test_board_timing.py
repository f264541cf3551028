"""The UART-accurate simulation of a board (sim/link_uart.py, sim/harness/uart_main.cpp) and its
timing figures (sim/board_timing.py).

The chip behind its board's UART must answer every request as the golden LinkModel does, a bad
CRC and a half frame left to the board's inter-byte timeout included, with no byte lost on
either line; each line must be busy exactly 10 bit times of the board's divisor per byte it
carried, a request must take at least the bit times of its bytes both ways, and the chip's own
clock (STATUS) must have counted the harness's cycles. Then MNIST images of the smallest
shipped model run over it equal to the golden model, and the figures add up.
"""

import dataclasses
import random

import pytest

from spikefab.boards.top import BOARDS
from spikefab.firmware.protocol import SlipDecoder, frame, parse_body
from spikefab.hdl.abi import (Command, LinkStatus, Region, Register, Status, pack_event_word,
                              route_entry)
from spikefab.sim.board_timing import board_timing_figures, board_timing_table, board_uart_build
from spikefab.sim.link_fast import FastLink
from spikefab.sim.link_model import LinkModel
from spikefab.sim.link_rtl import POWER_ON_RESET, START_DELAY
from spikefab.sim.link_uart import UartHarnessBuild, UartLink

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
