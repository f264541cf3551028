"""The host driver: one API for a chip, whatever carries the bytes.

::

    chip = open_chip("sim", profile="icebreaker")  # firmware/targets.py; or "golden", "serial:PORT"
    chip.load(image)                                # a ChipImage (firmware/image.py)
    result = chip.run(spikes)                       # (T, images, inputs) 0/1, or counts
    result.predictions, result.sops_per_image, result.cycles_per_image
    chip.status()

Layers: :class:`Link` speaks the protocol (:mod:`spikefab.firmware.protocol`) over a
*transport* (:class:`Transport`: anything with ``exchange(bytes) -> bytes`` that returns the
answers to every frame sent). This module has the board's, :class:`SerialTransport`
(pyserial); the simulator's and the golden link model's live beside them in ``sim/``
(``sim.link_rtl.SimTransport``, ``sim.link_model.ModelTransport``) and are handed to a
:class:`Link`, so the driver never imports a simulator. :class:`LinkChip` runs images through a
:class:`Link`, with the semantics every target shares (the golden one is
``sim.golden_chip.GoldenChip``): per image, a RESET, ``T`` ticks of input, then the image's
drain ticks; outputs counted per class; the class decided by
:func:`spikefab.sim.golden.decode` on the counts and the final membranes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..hdl.abi import (ADDRESS_BYTES, COUNTER_BITS, MAX_OUTPUTS, MAX_PAYLOAD, TICK_BITS,
                       ChipInfo, Command, LinkStatus, ProtocolError, Region, Register, Status,
                       to_signed)
from ..sim.golden import decode
from .protocol import (AXONS_PER_INPUT, EVENTS_PER_RUN, SlipDecoder, frame, input_payload,
                       outputs_payload, parse_body, parse_run_answer, read_payload, run_payload,
                       unpack_outputs, write_payload)

__all__ = ["LinkError", "Transport", "SerialTransport", "Link", "image_frames", "RunResult",
           "check_spikes", "ChipBase", "LinkChip"]


#: Output ticks wrap at the field's width.
TICK_MASK = (1 << TICK_BITS) - 1


class LinkError(RuntimeError):
    """The chip did not answer, answered with a NAK, or answered something malformed."""


# ---- transports ----

class Transport(Protocol):
    """What a :class:`Link` sends its frames through."""

    #: Most frames one :meth:`exchange` may carry (None: any number).
    window: int | None

    def exchange(self, data: bytes) -> bytes:
        """Send ``data`` (whole frames); return the bytes of every answer to them."""

    def close(self) -> None:
        ...


class SerialTransport:
    """A board on a serial port (pyserial). One frame in flight at a time: the chip holds one
    request while it works, and a UART has no flow control."""
    window = 1

    def __init__(self, port: str, *, baudrate: int = 3_000_000, timeout: float = 2.0):
        try:
            import serial
        except ImportError:
            raise LinkError("the serial target needs pyserial: pip install pyserial") from None
        try:
            self.serial = serial.serial_for_url(port, baudrate=baudrate, timeout=0.05)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open serial port {port!r}: {exc}. Is the board plugged "
                            f"in, and is this its port?") from None
        self.port = port
        self.timeout = timeout

    def exchange(self, data: bytes) -> bytes:
        expected = len(SlipDecoder().feed(data))
        self.serial.write(data)
        decoder, answer = SlipDecoder(), bytearray()
        got = 0
        deadline = time.monotonic() + self.timeout
        while got < expected:
            chunk = self.serial.read(4096)
            if chunk:
                answer += chunk
                got += len(decoder.feed(chunk))
                deadline = time.monotonic() + self.timeout
            elif time.monotonic() > deadline:
                raise LinkError(f"no answer from {self.port} within {self.timeout} s: is the "
                                f"board connected and programmed with a spikefab bitstream?")
        return bytes(answer)

    def close(self):
        self.serial.close()


# ---- the protocol client ----

class Link:
    """Requests and answers over a transport."""

    def __init__(self, transport):
        self.transport = transport
        self._seq = 0
        self.info = ChipInfo.decode(self.request(Command.INFO))

    def _frame(self, command, payload=b"") -> tuple[int, bytes]:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq, frame(self._seq, command, payload)

    def batch(self, requests: list[tuple[int, bytes]]) -> list[bytes]:
        """Send requests (pipelined where the transport allows); their OK payloads, in order."""
        window = self.transport.window or len(requests) or 1
        answers = []
        for k in range(0, len(requests), window):
            group = [self._frame(c, p) for c, p in requests[k:k + window]]
            data = self.transport.exchange(b"".join(f for _, f in group))
            frames = SlipDecoder().feed(data)
            if len(frames) != len(group):
                raise LinkError(f"sent {len(group)} requests, got {len(frames)} answers")
            for (seq, _), ((command, _), (body, error)) in zip(group, zip(requests[k:], frames)):
                try:
                    got_seq, status, payload = parse_body(body, error)
                except ProtocolError as exc:
                    raise LinkError(f"a corrupted answer from the chip: {exc}") from None
                if got_seq != seq:
                    raise LinkError(f"answer for request {got_seq}, expected {seq}")
                if status != Status.OK:
                    name = Command(command).name if command in Command._value2member_map_ \
                        else hex(command)
                    raise LinkError(f"the chip refused {name}: {Status(status).describe()}")
                answers.append(payload)
        return answers

    def request(self, command, payload=b"") -> bytes:
        return self.batch([(command, payload)])[0]

    # Commands.
    def write_requests(self, tile, region, offset, words) -> list[tuple[int, bytes]]:
        wb = self.info.word_bytes
        per = (MAX_PAYLOAD - ADDRESS_BYTES) // wb
        return [(Command.WRITE, write_payload(tile, region, offset + k, words[k:k + per], wb))
                for k in range(0, len(words), per)]

    def write(self, tile, region, offset, words) -> None:
        self.batch(self.write_requests(tile, region, offset, list(words)))

    def read(self, tile, region, offset, count) -> list[int]:
        wb, per = self.info.word_bytes, self.info.max_read_words
        answers = self.batch([(Command.READ, read_payload(tile, region, offset + k,
                                                          min(per, count - k)))
                              for k in range(0, count, per)])
        data = b"".join(answers)
        return [int.from_bytes(data[k:k + wb], "little") for k in range(0, len(data), wb)]

    def status(self) -> LinkStatus:
        return LinkStatus.decode(self.request(Command.STATUS))


def image_frames(link: Link, image) -> list[tuple[int, bytes]]:
    """The WRITE requests that load ``image``."""
    requests = []
    for write in image.writes:
        requests += link.write_requests(write.tile, write.region, write.offset, list(write.words))
    return requests


# ---- results ----

@dataclass
class RunResult:
    target: str
    predictions: np.ndarray        #: (images,) the decided class of each image
    counts: np.ndarray             #: (images, classes) output spikes per class
    final_v: np.ndarray            #: (images, classes) output membranes after the run
    outputs: list = field(repr=False)   #: per image, its output events (x, y, neuron, tick)
    sops: int = 0                  #: synaptic operations, all images
    cycles: int | None = None      #: mesh clock cycles, all images (the chip's own count)
    seconds: float = 0.0

    @property
    def images(self) -> int:
        return len(self.predictions)


def check_spikes(spikes, inputs) -> np.ndarray:
    spikes = np.asarray(spikes)
    if spikes.ndim != 3 or spikes.shape[2] != inputs:
        raise ValueError(f"spikes must have shape (steps, images, {inputs}), not {spikes.shape}")
    if not (np.issubdtype(spikes.dtype, np.integer) or spikes.dtype == bool):
        raise ValueError(f"spikes must hold integer event counts (or booleans), "
                         f"not {spikes.dtype}")
    if spikes.size and np.issubdtype(spikes.dtype, np.signedinteger) and spikes.min() < 0:
        raise ValueError("spikes must hold non-negative event counts")
    return spikes


# ---- chips ----

class ChipBase:
    image = None

    def _check_image(self, image):
        if image.info != self.info:
            raise ValueError(f"the image was compiled for chip {image.profile!r}, which differs "
                             f"from this target's chip; open the target with the image's chip "
                             f"(image.chip_profile()), or compile the model for this chip")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LinkChip(ChipBase):
    """A chip behind a :class:`Link` (the RTL simulation or a board)."""

    def __init__(self, link: Link, *, target: str):
        self.link = link
        self.info = link.info
        self.target = target

    def load(self, image) -> None:
        self._check_image(image)
        self.link.batch(image_frames(self.link, image))
        self.image = image

    def status(self) -> LinkStatus:
        return self.link.status()

    def _sops(self) -> int:
        return sum(self.link.read(t, Region.REGISTER, Register.SOPS, 1)[0]
                   for t in range(len(self.info.tiles)))

    def run(self, spikes, *, progress=None, outputs: bool = True) -> RunResult:
        """Every image of ``spikes``, one after the other (``outputs`` is accepted for
        symmetry with :meth:`GoldenChip.run`; the events are always listed)."""
        image, info, link = self.image, self.info, self.link
        if image is None:
            raise ValueError("load an image first")
        spikes = check_spikes(spikes, image.inputs)
        steps, count, _ = spikes.shape
        # A class's place: its tile's output records name (x, y, neuron).
        class_of = {(*o.tile, j): o.first + j for o in image.outputs for j in range(o.count)}
        # Input spikes go to every core of layer 0 at one axon each on the wire: RUN's events
        # when layer 0 is one core, else INPUT naming its cores (whose tile set costs 8 bytes
        # a frame more than RUN).
        input_tiles = sum(1 << info.tile_index(x, y) for x, y in image.input_tiles)
        one_tile = image.input_tiles[0] if len(image.input_tiles) == 1 else None
        start, sops0 = time.perf_counter(), self._sops()
        cycles0 = link.status().cycles
        counts = np.zeros((count, image.classes), np.int64)
        final_v = np.zeros((count, image.classes), np.int64)
        outputs = []
        for b in range(count):
            requests = [(Command.RESET, b"")]
            for t in range(steps):
                axons = np.repeat(np.arange(image.inputs), spikes[t, b]).tolist()
                per = EVENTS_PER_RUN if one_tile else AXONS_PER_INPUT
                chunks = [axons[k:k + per] for k in range(0, len(axons), per)] or [[]]
                for k, chunk in enumerate(chunks):
                    ticks = 1 if k == len(chunks) - 1 else 0
                    requests.append(
                        (Command.RUN, run_payload(ticks, [(*one_tile, a) for a in chunk]))
                        if one_tile else
                        (Command.INPUT, input_payload(input_tiles, ticks, chunk)))
            if image.drain_ticks:
                requests.append((Command.RUN, run_payload(image.drain_ticks)))
            answers = link.batch(requests)
            last_tick, pending = parse_run_answer(answers[-1])
            first_tick = last_tick - steps - image.drain_ticks   # ticks count from the image
            events = []
            while pending:
                got = unpack_outputs(link.request(Command.OUTPUTS,
                                                  outputs_payload(min(pending, MAX_OUTPUTS))))
                events += [(x, y, n, (tick - first_tick) & TICK_MASK) for x, y, n, tick in got]
                pending -= len(got)
            outputs.append(events)
            for x, y, neuron, _ in events:
                c = class_of.get((x, y, neuron))
                if c is not None:
                    counts[b, c] += 1
            for o in image.outputs:
                tile = info.tile_index(*o.tile)
                words = link.read(tile, Region.MEMBRANE, 0, o.count)
                final_v[b, o.first:o.first + o.count] = [
                    to_signed(w, info.tiles[tile].v_bits) for w in words]
            if progress:
                progress(b + 1, count)
        # The model behind ModelTransport has no clock (its count stays 0).
        cycles = (link.status().cycles - cycles0) & ((1 << COUNTER_BITS) - 1) or None
        return RunResult(self.target, decode(counts, final_v), counts, final_v, outputs,
                         self._sops() - sops0, cycles, time.perf_counter() - start)

    def close(self):
        self.link.transport.close()
