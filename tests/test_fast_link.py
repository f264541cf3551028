"""The C++ harness (sim/link_fast.py, the ``sim`` target) answers as the cocotb bench does.

The same seeded requests go through the cocotb link (``SimLink``) and the C++ harness
(``FastLink``) on the same Verilog: every answer must be equal byte for byte, and so must every
cycle count each reports, and the chip's own cycle count in STATUS, which only equals when
the harness feeds and takes every chunk on the bench's cycle. Then a shipped MNIST model runs
through ``open_chip("sim")`` and ``open_chip("cocotb")`` with equal results, and a harness that
dies or hangs is a clear error.
"""

import os
import random
import signal
import threading

import numpy as np
import pytest

from spikefab.firmware.protocol import SlipDecoder, frame, parse_body
from spikefab.firmware.targets import Target, TargetKind, open_chip
from spikefab.hdl.abi import END, Clocking, Command, LinkStatus, Region, Status, pack_event_word
from spikefab.hdl.profiles import get_profile
from spikefab.sim.encoding import rate_encode
from spikefab.sim.link_fast import FastLink, HarnessBuild
from spikefab.sim.link_rtl import SimLink, link_build
from spikefab.sim.runner import SimulationError

from conftest import record_checked
from link_client import random_encode


@pytest.fixture(scope="module")
def build():
    """The ``tiny`` profile's chip as the ``sim`` and ``cocotb`` targets build it."""
    profile = get_profile("tiny")
    chip = profile.chip(clocking=Clocking.SINGLE)
    return link_build(chip, output_depth=profile.output_depth, encoder=profile.encoder,
                      rx_queue=profile.rx_queue,
                      label=f"link-{profile.name}-{chip.clocking.value}")


def _address(tile, region, offset):
    return bytes([tile, region]) + offset.to_bytes(4, "little")


class Script:
    """A seeded session of requests, written once and played on each link."""

    def __init__(self, info, seed):
        self.info, self.rng, self.steps, self.seq = info, random.Random(seed), [], 0

    def request(self, command, payload=b""):
        self.seq = self.seq % 255 + 1
        return frame(self.seq, command, payload)

    def send(self, data, what):
        self.steps.append(("send", what, data))

    def idle(self, cycles, what):
        self.steps.append(("idle", what, cycles))


def _script(info, seed, timeout_log2):
    s = Script(info, seed)
    rng, wb = s.rng, info.word_bytes
    s.send(s.request(Command.INFO), "INFO")
    s.send(s.request(Command.STATUS), "STATUS at the start")
    # A network that spikes: registers, every synapse word (in long WRITEs: several chunks
    # each), routes, the last tile's neurons to the host.
    for t, tile in enumerate(info.tiles):
        s.send(s.request(Command.WRITE, _address(t, Region.REGISTER, 0) + b"".join(
            v.to_bytes(wb, "little") for v in (rng.randint(4, 20), rng.randint(0, 3),
                                               rng.randint(0, 1), 0, 0, 0, 0, 0))),
               f"registers of tile {t}")
        words = []
        for _ in range(tile.regions[Region.SYNAPSE]):
            word = 0
            for j in range(tile.lanes):
                word |= (rng.randint(-2, (1 << (tile.w_bits - 1)) - 1)
                         & ((1 << tile.w_bits) - 1)) << (j * tile.w_bits)
            words.append(word.to_bytes(wb, "little"))
        step = max(1, 200 // wb)
        for offset in range(0, len(words), step):
            s.send(s.request(Command.WRITE, _address(t, Region.SYNAPSE, offset)
                             + b"".join(words[offset:offset + step])), f"synapses of tile {t}")
        dests = tile.regions[Region.ROUTE_DEST]
        last = t == len(info.tiles) - 1
        s.send(s.request(Command.WRITE, _address(t, Region.ROUTE_INDEX, 0) + b"".join(
            (rng.randrange(dests) | rng.randint(0, 2) << 10 | last << 21).to_bytes(wb, "little")
            for _ in range(tile.neurons))), f"routes of tile {t}")
        s.send(s.request(Command.WRITE, _address(t, Region.ROUTE_DEST, 0) + b"".join(
            (x | rng.randrange(info.tiles[x].axons) << 6).to_bytes(wb, "little")
            for x in (rng.randrange(len(info.tiles)) for _ in range(dests)))),
               f"destinations of tile {t}")
    s.send(s.request(Command.RESET), "RESET")
    for tick in range(12):
        events = [pack_event_word(x, 0, rng.randrange(info.tiles[x].axons))
                  for x in (rng.randrange(len(info.tiles)) for _ in range(rng.randint(0, 40)))]
        run = s.request(Command.RUN, rng.randint(1, 3).to_bytes(2, "little") + b"".join(
            e.to_bytes(2, "little") for e in events))
        if tick % 3 == 0:   # two frames in one exchange: the READ waits for the RUN's events
            run += s.request(Command.READ, _address(0, Region.ACCUMULATOR, 0)
                             + info.tiles[0].neurons.to_bytes(2, "little"))
        s.send(run, f"RUN {tick}")
        s.send(s.request(Command.OUTPUTS, rng.randint(0, 40).to_bytes(2, "little")),
               f"OUTPUTS {tick}")
        if tick % 4 == 1:
            s.send(s.request(Command.STATUS), f"STATUS {tick}")
    # Images drawn by the chip's encoder, three in one exchange: the chip's queue takes the
    # next ones while it runs one.
    for k in range(3):
        s.send(b"".join(s.request(Command.ENCODE, random_encode(rng, info)) for _ in range(3)),
               f"three ENCODEs {k}")
    for t, tile in enumerate(info.tiles):
        s.send(s.request(Command.READ, _address(t, Region.MEMBRANE, 0)
                         + tile.neurons.to_bytes(2, "little")), f"membranes of tile {t}")
    # A bad CRC, then a good frame.
    good = s.request(Command.STATUS)
    s.send(good[:-3] + bytes([good[-3] ^ 0x01]) + good[-2:], "bad CRC")
    s.send(s.request(Command.STATUS), "STATUS after the bad CRC")
    # Half a frame left to the link's inter-byte timeout: dropped unanswered, and the next
    # frame is read cleanly; half a frame with a pause short of it: completed by its rest.
    half = s.request(Command.READ, _address(1, Region.MEMBRANE, 0) + (2).to_bytes(2, "little"))
    s.send(half[:len(half) // 2], "half a frame")
    s.idle(2 << timeout_log2, "idle past the timeout")
    s.send(s.request(Command.STATUS), "STATUS after the timeout")
    whole = s.request(Command.READ, _address(0, Region.MEMBRANE, 0) + (3).to_bytes(2, "little"))
    s.send(whole[:5], "the first bytes of a frame")
    s.idle((1 << (timeout_log2 - 1)) // 4, "a pause short of the timeout")
    s.send(whole[5:], "the rest of the frame")
    s.send(b"", "nothing")
    s.idle(7, "a few idle cycles")
    s.send(bytes([END, END]), "an empty frame")
    s.send(s.request(Command.STATUS), "STATUS at the end")
    return s.steps


def _play(link, steps):
    """Every answer and every cycle count the link reports."""
    seen = []
    for kind, what, arg in steps:
        if kind == "send":
            seen.append((what, link.exchange(arg), link.cycles))
        else:
            link.idle(arg)
            seen.append((what, b"", link.cycles))
    return seen


def test_fast_link_equals_the_cocotb_link_byte_for_byte_and_cycle_for_cycle(build, base_seed):
    seed = base_seed + 31
    steps = _script(build.info, seed, build.timeout_log2)
    with FastLink(build) as fast:
        got = _play(fast, steps)
    with SimLink(build) as slow:
        want = _play(slow, steps)
    assert len(got) == len(want) == len(steps)
    statuses, outputs = [], 0
    for (what, answer, cycles), (_, want_answer, want_cycles) in zip(got, want):
        assert answer == want_answer, (f"seed {seed}: {what}: the harness answered "
                                       f"{answer.hex()}, the cocotb bench {want_answer.hex()}")
        assert cycles == want_cycles, (f"seed {seed}: {what}: the harness reports cycle "
                                       f"{cycles}, the cocotb bench {want_cycles}")
        for body, error in SlipDecoder().feed(answer):
            seq, status, payload = parse_body(body, error)
            if what.startswith("STATUS") and status == Status.OK:
                statuses.append((what, LinkStatus.decode(payload).cycles))
            if what.startswith("OUTPUTS") and status == Status.OK:
                outputs += len(payload) // 4
    # The script reached what it is meant to compare: the chip's clock in STATUS, outputs, a
    # NAK for the bad CRC, nothing for the dropped half frame, the completed one answered.
    answers = {what: answer for what, answer, _ in got}
    assert len(statuses) >= 5 and all(c > 0 for _, c in statuses), (seed, statuses)
    assert [c for _, c in statuses] == sorted(c for _, c in statuses), (seed, statuses)
    assert outputs > 0, f"seed {seed}: the network never reached the host"
    [(_, status, _)] = [parse_body(*f) for f in SlipDecoder().feed(answers["bad CRC"])]
    assert status == Status.CRC, seed
    assert answers["half a frame"] == answers["idle past the timeout"] == b""
    rest = answers["the rest of the frame"]
    [(_, status, _)] = [parse_body(*f) for f in SlipDecoder().feed(rest)]
    assert status == Status.OK, seed
    record_checked("fast-link", fast_link_exchanges=len(steps))


def test_a_shipped_model_gives_equal_results_on_sim_and_cocotb(base_seed):
    from spikefab.firmware.mnist import bundled_slice
    from spikefab.firmware.run import load_network
    seed = base_seed + 5
    image, steps = load_network("mnist-fast", profile="icebreaker", seed=seed)
    data = bundled_slice()
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(data.labels), size=3, replace=False))
    spikes = rate_encode(data.images[chosen], steps, seed, data.indices[chosen])
    results = {}
    for target in ("sim", "cocotb"):
        with open_chip(target, profile=image.chip_profile()) as chip:
            chip.load(image)
            results[target] = chip.run(spikes)
    fast, slow = results["sim"], results["cocotb"]
    where = f"seed {seed}, images {chosen.tolist()}"
    assert np.array_equal(fast.predictions, slow.predictions), where
    assert np.array_equal(fast.counts, slow.counts), where
    assert np.array_equal(fast.final_v, slow.final_v), where
    assert [sorted(o) for o in fast.outputs] == [sorted(o) for o in slow.outputs], where
    assert fast.sops == slow.sops and fast.sops > 0, where
    assert fast.cycles == slow.cycles and fast.cycles > 0, (where, fast.cycles, slow.cycles)


def test_targets_name_both_simulations():
    assert Target.parse("sim").kind is TargetKind.SIM
    assert Target.parse("cocotb").kind is TargetKind.COCOTB
    assert str(Target.parse("cocotb")) == "cocotb"
    with pytest.raises(ValueError, match="golden, sim, cocotb, serial:PORT"):
        Target.parse("verilator")


@pytest.mark.parametrize("when", ["mid-request", "between requests"])
def test_a_killed_harness_is_a_clear_error(build, when):
    link = FastLink(build)
    link.exchange(frame(1, Command.INFO))
    if when == "mid-request":   # an idle of 10^12 cycles keeps it busy for hours
        killer = threading.Timer(0.5, os.kill, (link.pid, signal.SIGKILL))
        killer.start()
        with pytest.raises(SimulationError, match=r"harness .*link_main stopped answering "
                                                  r"\(killed by signal 9\)"):
            link.idle(10 ** 12)
        killer.join()
    else:
        os.kill(link.pid, signal.SIGKILL)
        with pytest.raises(SimulationError, match=r"harness .*link_main stopped (answering|"
                                                  r"taking requests) \(killed by signal 9\)"):
            link.exchange(frame(2, Command.STATUS))
    link.close()   # the failure is reported once
    with pytest.raises(SimulationError, match="closed"):
        link.exchange(frame(3, Command.STATUS))


def test_a_harness_that_exits_reports_its_stderr(build):
    link = FastLink(build)
    link._process.stdin.write(b"\x05\x00")   # half a length, then the end of its input
    link._process.stdin.close()
    with pytest.raises(SimulationError, match="stopped (answering|taking requests) .*exit "
                                              "status 3.*the host closed its end of the link"):
        link.exchange(b"")
    link.close()


def test_a_hang_is_reported_by_the_harness(build):
    """A request still unanswered ``request_timeout`` cycles after its last byte: a RUN of
    1000 ticks, with the limit made far shorter than they take."""
    with FastLink(build, request_timeout=500) as link:
        link.exchange(frame(1, Command.INFO))
        with pytest.raises(SimulationError, match="exit status 3.*no answer to a request "
                                                  "within 500 cycles of its last byte"):
            link.exchange(frame(2, Command.RUN, (1000).to_bytes(2, "little")))


def test_several_clock_domains_stay_with_cocotb():
    profile = get_profile("tiny")
    chip = profile.chip(clocking=Clocking.GALS)
    build = link_build(chip, output_depth=profile.output_depth, label="link-tiny-gals")
    with pytest.raises(SimulationError, match="several clock domains"):
        HarnessBuild(build)


def test_a_failed_build_names_its_log(build, tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEFAB_BUILD_DIR", str(tmp_path))
    harness = HarnessBuild(build)
    harness.verilog = "module top(input clk; endmodule\n"   # not Verilog
    with pytest.raises(SimulationError, match=r"building .* failed .*see .*build\.log"):
        harness.build()
    assert (harness.directory / "build.log").exists()
