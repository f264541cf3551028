"""Post-synthesis check: each board's top as Yosys maps it to the FPGA's cells (the netlist the
bitstream is placed from: iCE40 for the iCEBreaker, ECP5 for the ULX3S) answers over its UART
pins exactly as the golden LinkModel does.

The exchange writes a row of layer-1 weights (SPRAM on the iCEBreaker, block RAM on the ULX3S)
and of layer-2 weights (block RAM), routes tile 0's first neurons to the host, runs a tick with
events, and reads back membranes, counters, the spikes (OUTPUTS) and the weights; a frame with
a bad CRC must be refused and change nothing. Only the PLL is left out (it has no simulation
model): the chip runs from the oscillator pin.
"""

import json
import random

import pytest

from spikefab.boards.netlist import board_netlist, cell_models
from spikefab.boards.top import board_top
from spikefab.firmware.protocol import SlipDecoder, frame, parse_body
from spikefab.hdl.abi import Command, Region, Register, Status, pack_event_word, route_entry
from spikefab.sim.link_model import LinkModel
from spikefab.sim.runner import RTLBuild, build_dir_root

from conftest import record_checked


def _address(tile, region, offset):
    return bytes([tile, region]) + offset.to_bytes(4, "little")


def _requests(info, rng):
    wb = info.word_bytes
    seq = iter(range(1, 256))

    def request(command, payload=b""):
        return frame(next(seq), command, payload)

    def words(values):
        return b"".join((v & ((1 << (8 * wb)) - 1)).to_bytes(wb, "little") for v in values)

    tile0 = info.tiles[0]
    rows = tile0.neurons // tile0.lanes            # synapse words per axon
    axon = 5
    weights = [rng.randrange(1 << (8 * tile0.lanes)) for _ in range(rows)]   # random int8 lanes
    tile1 = info.tiles[1]
    l2 = [rng.randrange(1 << (tile1.lanes * 8)) for _ in range(4)]
    events = [pack_event_word(0, 0, axon), pack_event_word(0, 0, axon),
              pack_event_word(0, 0, 1000), pack_event_word(1, 0, 3)]
    exchanges = [
        ("INFO", request(Command.INFO)),
        ("WRITE threshold", request(Command.WRITE, _address(0, Region.REGISTER,
                                                             Register.THRESHOLD) + words([60]))),
        ("WRITE layer-1 row", request(Command.WRITE,
                                              _address(0, Region.SYNAPSE, axon * rows)
                                              + words(weights))),
        ("WRITE layer-2 words", request(Command.WRITE, _address(1, Region.SYNAPSE, 12)
                                              + words(l2))),
        ("WRITE routes to the host", request(Command.WRITE, _address(0, 5, 0) + words(
            [route_entry(to_host=True)] * 16))),
        ("RUN one tick", request(Command.RUN, (1).to_bytes(2, "little") + b"".join(
            e.to_bytes(2, "little") for e in events))),
        ("OUTPUTS", request(Command.OUTPUTS, (64).to_bytes(2, "little"))),
        ("READ membranes", request(Command.READ, _address(0, Region.MEMBRANE, 0)
                                   + (32).to_bytes(2, "little"))),
        ("READ registers", request(Command.READ, _address(0, Region.REGISTER, 0)
                                   + (8).to_bytes(2, "little"))),
        ("READ layer-1 row back", request(Command.READ, _address(0, Region.SYNAPSE, axon * rows)
                                          + rows.to_bytes(2, "little"))),
        ("READ layer-2 words back", request(Command.READ, _address(1, Region.SYNAPSE, 12)
                                            + (4).to_bytes(2, "little"))),
    ]
    bad = bytearray(request(Command.WRITE, _address(0, Region.MEMBRANE, 0) + words([1234])))
    bad[-3] ^= 0x40                                 # a CRC byte (before the closing END)
    exchanges += [
        ("bad CRC", bytes(bad)),
        ("READ membranes again", request(Command.READ, _address(0, Region.MEMBRANE, 0)
                                         + (4).to_bytes(2, "little"))),
    ]
    return exchanges


@pytest.mark.parametrize("board, offset", [("icebreaker", 61), ("ulx3s-85f", 62)])
def test_board_netlist_answers_like_the_model(board, offset, base_seed):
    seed = base_seed + offset
    top = board_top(board, pll=False)
    directory = build_dir_root() / "netlist" / board
    build = RTLBuild(None, f"netlist-{board}", verilog=board_netlist(top, directory),
                     libraries=[cell_models(top.family.value, directory)], ports_only=True)
    model = LinkModel(top.profile.info())
    exchanges = _requests(model.info, random.Random(seed))
    expected = [model.receive(data) for _, data in exchanges]
    case = directory / f"case-{seed}.json"
    result = directory / f"result-{seed}.json"
    case.write_text(json.dumps({
        "clock": f"{top.platform_class.default_clk}_0__io",
        # An even number of ps (cocotb splits the period in two halves).
        "divisor": top.divisor, "period_ps": 2 * round(0.5e6 / top.clock_mhz),
        "reset_cycles": int(20e-6 * top.clock_mhz * 1e6),
        "exchanges": [data.hex() for _, data in exchanges]}))
    build.run("spikefab.sim.benches.uart_netlist_bench", name=f"seed{seed}",
              env={"SPIKEFAB_UART_CASE": str(case), "SPIKEFAB_UART_RESULT": str(result)})
    answers = [bytes.fromhex(r["answer"]) for r in json.loads(result.read_text())["results"]]
    outputs = 0
    for (what, _), got, want in zip(exchanges, answers, expected, strict=True):
        got_frames = [parse_body(b, e) for b, e in SlipDecoder().feed(got)]
        want_frames = [parse_body(b, e) for b, e in SlipDecoder().feed(want)]
        assert got_frames == want_frames, (what, seed, got.hex(), want.hex())
        if what == "OUTPUTS":
            outputs = len(want_frames[0][2]) // 4
        if what == "bad CRC":
            assert want_frames[0][1] == Status.CRC
    assert outputs > 0, "the tick made no spike reach the host: the check proves too little"
    record_checked(f"netlist-{board}", exchanges=len(exchanges), output_spikes=outputs)
