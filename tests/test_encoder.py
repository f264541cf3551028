"""The chip's encoder (ENCODE): one definition of its spikes, drawn alike by the golden encoder
(``sim/encoding.py: chip_encode``), the link model (``ChipInfo.encode_events``) and the RTL.

The RTL runs in the C++ harness on the ``tiny`` profile's chip (one clock), which has the
encoder; ``tests/test_host_link_rtl.py`` runs ENCODE on chips with cores on their own clocks,
with its bad frames and under the fuzzer.
"""

import random

import numpy as np
import pytest

from spikefab.firmware.mnist import bundled_slice
from spikefab.firmware.protocol import (SlipDecoder, encode_payload, frame, parse_body,
                                        pixel_runs)
from spikefab.hdl.abi import (ENCODE_HEAD, MAX_REPORT, MAX_RUN_TICKS, Clocking, Command,
                              EncodeFlag, ProtocolError, Region, Status, encoder_step,
                              parse_pixel_runs)
from spikefab.hdl.profiles import get_profile
from spikefab.sim.encoding import chip_encode, encode, encoder_draws, encoder_state, rate_encode
from spikefab.sim.link_fast import FastLink
from spikefab.sim.link_model import LinkModel
from spikefab.sim.link_rtl import link_build

from link_client import random_encode, random_pixels
from test_host_link_rtl import Session, _address, _spiking_network


def test_draws_are_the_generators_top_bits(base_seed):
    rng = random.Random(base_seed)
    for state in [0, 1, 0xFFFFFFFF] + [rng.getrandbits(32) for _ in range(20)]:
        want, x = [], state
        for _ in range(300):
            x = encoder_step(x)
            want.append(x >> 24)
        assert encoder_draws(state, 300).tolist() == want, (state, base_seed)
    assert encoder_draws(0, 10).tolist() == [0] * 10     # state 0 stays 0, as in the chip


def test_spike_rate_is_value_over_256(base_seed):
    """Over 40,000 draws each, a pixel of value p spikes at p / 256 (within 5 sigma)."""
    steps = 1000
    for p in (1, 17, 128, 200, 255):
        image = np.full((1, 40), p, dtype=np.uint8)
        spikes = chip_encode(image, steps, base_seed)
        n = spikes.size
        rate, want = spikes.mean(), p / 256
        sigma = (want * (1 - want) / n) ** 0.5
        assert abs(rate - want) < 5 * sigma + 1e-9, (p, rate, want, base_seed)
    assert not chip_encode(np.zeros((1, 40), dtype=np.uint8), 5, base_seed).any()


def test_pixel_runs_carry_the_nonzero_pixels(base_seed):
    rng = random.Random(base_seed)
    for _ in range(50):
        pixels = random_pixels(rng, 1200)
        want = [(k, v) for k, v in enumerate(pixels) if v]
        assert parse_pixel_runs(pixel_runs(pixels)) == want, base_seed
    # Gaps and stretches longer than a byte counts.
    pixels = [0] * 600 + [7] * 300
    assert pixel_runs(pixels)[:6] == bytes([255, 0, 255, 0, 90, 255])
    assert parse_pixel_runs(pixel_runs(pixels)) == [(600 + k, 7) for k in range(300)]
    assert pixel_runs([0] * 30) == b""
    assert parse_pixel_runs(bytes([3, 0, 2, 2, 9, 0])) == [(5, 9), (6, 0)]
    for data, message in ((bytes([0, 3, 5, 6]), "lacks 1 values"),
                          (bytes([0, 1, 5, 4]), "run at byte 3 has no count")):
        with pytest.raises(ProtocolError, match=message) as e:
            parse_pixel_runs(data)
        assert e.value.status == Status.LENGTH


def test_chip_encode_is_what_encode_asks_the_chip_for():
    """The golden encoder (a batch, by jumps of the generator) and the link model's ENCODE (a
    request, step by step) draw the same spikes for MNIST images: the driver may send either
    the pixels or the spikes."""
    data = bundled_slice()
    info = get_profile("ulx3s").info()
    images, indices, steps, seed = data.images[:4], data.indices[:4], 5, 3
    spikes = chip_encode(images, steps, seed, indices)
    assert encode(images, steps, seed, indices, encoder="xorshift32").tolist() == spikes.tolist()
    assert (encode(images, steps, seed, indices, encoder="pcg64")
            == rate_encode(images, steps, seed, indices)).all()
    for k, (image, index) in enumerate(zip(images, indices)):
        payload = encode_payload(0b01, steps, encoder_state(seed, index), image.reshape(-1))
        request = info.encode_events(payload)
        assert (request.ticks, request.drain, request.clear, request.report) == (
            steps, 0, False, None)
        for t in range(steps):
            assert {(x, y) for x, y, _ in request.events[t]} <= {(0, 0)}
            drawn = sorted(axon for _, _, axon in request.events[t])
            assert drawn == np.flatnonzero(spikes[t, k]).tolist(), (k, t)
    with pytest.raises(ValueError, match="unknown encoder 'lfsr'"):
        encode(images, steps, seed, encoder="lfsr")


def test_encode_refusals_in_the_chips_order():
    info = get_profile("tiny").info()
    limit = min(t.axons for t in info.tiles)           # both tiles: 16 axons

    def head(tiles=3, ticks=2, drain=0, flags=0, report=(0, 0)):
        return ENCODE_HEAD.pack(tiles, ticks, 5, drain, flags, *report)

    ok = head()
    both = EncodeFlag.CLEAR | EncodeFlag.REPORT
    cases = {
        "head short": (ok[:-1], Status.LENGTH),
        "no tile": (head(0) + b"\x01", Status.ARGUMENT),
        "too many ticks": (head(1, ticks=MAX_RUN_TICKS + 1), Status.ARGUMENT),
        "tile past the last": (head(4) + b"\x01\x05", Status.ADDRESS),
        # The tiles before the rest of the head: ADDRESS before ARGUMENT here.
        "tile past the last, bad flags": (head(4, flags=8), Status.ADDRESS),
        "too many drain ticks": (head(drain=MAX_RUN_TICKS + 1), Status.ARGUMENT),
        "unknown flag": (head(flags=4), Status.ARGUMENT),
        "report of none": (head(flags=both, report=(0, 0)), Status.ARGUMENT),
        "report of too many": (head(flags=both, report=(0, MAX_REPORT + 1)), Status.ARGUMENT),
        "report past the tiles": (head(flags=EncodeFlag.REPORT, report=(2, 1)), Status.ADDRESS),
        "report past the neurons": (head(flags=EncodeFlag.REPORT, report=(1, 9)),
                                    Status.ADDRESS),
        "value missing": (ok + bytes([0, 2, 9]), Status.LENGTH),
        "count missing": (ok + bytes([0, 1, 9, 3]), Status.LENGTH),
        "axon off the tiles": (ok + bytes([limit - 1, 2, 5, 5]), Status.ADDRESS),
        # Both wrong: the runs' form is judged before their axons.
        "both": (ok + bytes([limit, 1, 5, 0]), Status.LENGTH),
    }
    for name, (payload, status) in cases.items():
        with pytest.raises(ProtocolError) as e:
            info.encode_events(payload)
            pytest.fail(f"{name}: accepted")
        assert e.value.status == status, name
    assert info.encode_events(ok + bytes([limit, 0])).ticks == 2   # a run of none, past the end
    # Without REPORT, the report's tile and count mean nothing.
    assert info.encode_events(head(report=(7, 0))).report is None
    no_encoder = get_profile("icebreaker").info()
    with pytest.raises(ProtocolError) as e:
        no_encoder.encode_events(ok)
    assert e.value.status == Status.COMMAND
    [(body, _)] = SlipDecoder().feed(LinkModel(no_encoder).receive(frame(1, Command.ENCODE, ok)))
    assert parse_body(body)[1] == Status.COMMAND


@pytest.fixture(scope="module")
def tiny_build():
    profile = get_profile("tiny")
    assert profile.encoder
    chip = profile.chip(clocking=Clocking.SINGLE)
    return link_build(chip, output_depth=profile.output_depth, encoder=True,
                      rx_queue=profile.rx_queue,
                      label=f"link-{profile.name}-{chip.clocking.value}")


def test_rtl_encode_equals_model(tiny_build, base_seed):
    """Random ENCODEs on a spiking network (any tiles, 0 to 3 ticks, any state, pixels sent with
    the value 0, runs of none), each followed by the chip's outputs and membranes; repeats
    answered again without drawing; bad ones refused with the chip unchanged. Every answer
    equal to the model's."""
    seed = base_seed + 23
    rng = random.Random(seed)
    model = LinkModel(tiny_build.info)
    info = model.info
    with FastLink(tiny_build) as link:
        s = Session(link, model, seed)
        s.send(s.request(Command.INFO), what="INFO")
        _spiking_network(s, rng)
        spikes = repeats = 0
        for _ in range(25):
            payload = bytearray(random_encode(rng, info, most_ticks=3))
            payload[10:14] = rng.choice([0, 1, rng.getrandbits(32)]).to_bytes(4, "little")
            request = s.request(Command.ENCODE, bytes(payload))
            [(_, status, answer)] = s.send(request, what="ENCODE")
            assert status == Status.OK, (seed, payload.hex())
            spikes += sum(map(len, info.encode_events(payload).events))
            if rng.random() < 0.3:
                # Its answer "lost": sent again at once, answered again, not run again.
                [(_, status, again)] = s.send(request, what="ENCODE repeated")
                assert (status, again) == (Status.OK, answer)
                [(_, _, counters)] = s.send(s.request(Command.STATUS), what="STATUS")
                assert counters[:4] == answer[:4], f"a repeated ENCODE ran (seed {seed})"
                repeats += 1
            s.send(s.request(Command.OUTPUTS, (64).to_bytes(2, "little")), what="OUTPUTS")
            t = rng.randrange(2)
            s.send(s.request(Command.READ, _address(t, Region.MEMBRANE, 0)
                             + info.tiles[t].neurons.to_bytes(2, "little")), what="V")
        assert spikes > 50, f"the encoder hardly spiked (seed {seed})"
        assert repeats, seed

        before = s.snapshot()
        ok = ENCODE_HEAD.pack(3, 1, 7, 0, EncodeFlag.CLEAR, 0, 0)
        for name, payload in {
                "value missing": ok + bytes([1, 2, 9]),
                "axon off a tile": ok + bytes([16, 1, 0x80]),
                "runs past the frame's end": ok + bytes([0, 255]) + bytes(7),
                "no tile": ENCODE_HEAD.pack(0, 1, 7, 0, 0, 0, 0) + bytes([0, 1, 0x80]),
                "report past the neurons": ENCODE_HEAD.pack(3, 1, 7, 0, EncodeFlag.REPORT, 1, 9),
                "head short": ok[:-2]}.items():
            [(_, status, _)] = s.send(s.request(Command.ENCODE, payload), what=name)
            assert status != Status.OK, name
            assert s.snapshot() == before, f"{name} changed the chip (seed {seed})"
