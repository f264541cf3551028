"""The per-command cycle breakdown (sim/chip_cycles.py): every frame accounted for, once."""

import numpy as np
import pytest

from spikefab.firmware.protocol import frame
from spikefab.hdl.abi import Command
from spikefab.sim.chip_cycles import FrameByFrame, chip_cycle_figures, main


class _Counting:
    """A stand-in link: each frame costs as many cycles as it has bytes, answered by its
    length."""
    window = None

    def __init__(self):
        self.link = self
        self.cycles, self.seen = 0, []

    def exchange(self, data):
        self.seen.append(data)
        self.cycles += len(data)
        return bytes([len(data) & 0xFF])

    def close(self):
        pass


def test_every_frame_goes_alone_and_is_counted_once(base_seed):
    rng = np.random.default_rng(base_seed)
    # Payloads full of END and ESC bytes, which SLIP escapes inside the frame.
    frames = [frame(seq, code, bytes(rng.choice([0xC0, 0xDB, 0x00, 0x41],
                                                size=int(rng.integers(0, 40)))))
              for seq, code in enumerate([Command.RUN, Command.RESET, Command.RUN,
                                          Command.OUTPUTS, Command.READ])]
    inner = _Counting()
    transport = FrameByFrame(inner)
    answer = transport.exchange(b"".join(frames[:3])) + transport.exchange(b"".join(frames[3:]))
    assert [r[0] for r in transport.records] == ["RUN", "RESET", "RUN", "OUTPUTS", "READ"], \
        base_seed
    assert [r[1] for r in transport.records] == [len(f.lstrip(b"\xc0")) for f in frames]
    assert [r[2] for r in transport.records] == [r[1] for r in transport.records]
    assert inner.seen == [f.lstrip(b"\xc0") for f in frames]
    assert list(answer) == [r[1] & 0xFF for r in transport.records]


def test_the_breakdown_adds_up_to_the_chips_own_count(base_seed):
    seed = base_seed + 3
    r = chip_cycle_figures("icebreaker", "mnist-fast", images=2, seed=seed)
    commands = r["commands"]
    # The driver's requests per image on a chip without the encoder: RESET, a RUN per tick
    # and the drain RUN, OUTPUTS and READ.
    assert commands["RESET"]["requests"] == 1, (seed, commands)
    assert commands["RUN"]["requests"] == r["steps"] + 1, (seed, commands)
    assert r["main_command"] == "RUN" and commands["RUN"]["cycles"] > r["steps"] * 100, seed
    assert abs(sum(c["cycles"] for c in commands.values()) - r["cycles_per_image"]) < 1e-6
    # Frame by frame, the harness's cycles match the chip's own counter within the counter
    # reads at the run's ends.
    assert abs(r["cycles_per_image"] - r["counted_per_image"]) < 0.02 * r["cycles_per_image"], \
        (seed, r["cycles_per_image"], r["counted_per_image"])
    assert r["ops_per_cycle"] < r["main_ops_per_cycle"], seed
    # A layer-1 event reads its 128 weights 8 per cycle: no RUN can beat 16 cycles an event.
    assert r["run_fit"]["requests"] == 2 * (r["steps"] + 1), seed
    assert r["run_fit"]["per_event"] > 128 / 8 - 0.5, (seed, r["run_fit"])


@pytest.mark.parametrize("argv, says", [
    (["--profiles", "nope"], "unknown chip profile 'nope'"),
    (["--profiles", "icebreaker", "--models", "nope"], "--model 'nope': no such file"),
    (["--images", "0"], "--images must be at least 1, not 0"),
])
def test_bad_arguments_are_refused_clearly(argv, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err
