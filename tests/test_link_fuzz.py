"""The link model under a fuzzer: 100,000 mutated frames a run, against an oracle of its own.

Each mutated frame is a valid request (every command) broken as a line or a host breaks one:
bits flipped, a byte dropped or doubled, the frame cut short, a bad escape, an END inside it,
garbage before it, two frames run together. The oracle does not ask the model what it
refused: it takes the whole state (every memory, the dynamic state, the counters of the
cores and the chip, the output queue, the last request remembered for repeats) before and
after, and every frame of a mutation must be answered with a NAK and leave it unchanged;
after each batch a valid request must be answered OK. A mutation that still holds a frame
passing the CRC (a change at its very edge, or a collision: about 1 in 65,536) is a request
after all and is not sent.
"""

import pickle
import random

from spikefab.firmware.protocol import SlipDecoder, crc16, frame, parse_body
from spikefab.hdl.abi import CRC_RESIDUE, Status

from link_client import Client, mutate, random_state, tally
from test_link_model_naks import _valid_requests

FRAMES = 100_000


def _state(model) -> bytes:
    """Everything a request could change but the link's own counts of frames and NAKs."""
    model._sync_out()
    return pickle.dumps((
        [(t.synapse, t.bias.tolist(), t.params, t.route_index, t.route_dest)
         for t in model.tiles],
        [v.tolist() for v in model._v], [i.tolist() for i in model._i], model._delivered,
        model._counters, model._ticks, model._mesh_drops, model.output_drops, model.outputs,
        model.taken, model._last))


def test_model_refuses_100k_mutated_frames_without_a_trace(base_seed):
    seed = base_seed + 900
    rng = random.Random(seed)
    client = Client()
    random_state(client, rng)
    model = client.link
    seq = 0

    def next_seq():
        nonlocal seq
        seq = seq % 255 + 1
        return seq

    mutated = skipped = batches = 0
    before = _state(model)
    while mutated < FRAMES:
        batches += 1
        for _ in range(rng.randint(1, 40)):
            command, payload = rng.choice(_valid_requests(rng))
            data = mutate(rng, frame(next_seq(), command, payload))
            frames = SlipDecoder().feed(data)
            if any(error is None and len(body) >= 4 and crc16(body) == CRC_RESIDUE
                   for body, error in frames):
                skipped += 1
                continue
            mutated += 1
            answers = SlipDecoder().feed(model.receive(data))
            assert len(answers) == len(frames), \
                f"not one answer per frame of {data.hex()} (seed {seed})"
            assert all(parse_body(body, error)[1] != Status.OK for body, error in answers), \
                f"{data.hex()} accepted (seed {seed})"
            assert _state(model) == before, f"{data.hex()} changed the state (seed {seed})"
        # Then a valid request is answered as any other: the link is in step.
        command, payload = rng.choice(_valid_requests(rng))
        [(body, error)] = SlipDecoder().feed(model.receive(frame(next_seq(), command,
                                                                 payload)))
        assert parse_body(body, error)[1] == Status.OK, f"seed {seed}"
        before = _state(model)
    assert skipped < FRAMES // 20, f"seed {seed}"
    tally("fuzz", protocol_model_mutated_frames=mutated)
