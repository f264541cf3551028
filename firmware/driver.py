"""The host driver: one API for a chip, whatever carries the bytes.

::

    chip = open_chip("sim", profile="icebreaker")  # firmware/targets.py; or "golden", "serial:PORT"
    chip.load(image)                                # a ChipImage (firmware/image.py)
    result = chip.run(spikes)                       # (T, images, inputs) 0/1, or counts,
                                                    # or sim.encoding.Pixels
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
:func:`spikefab.sim.golden.decode` on the counts and the final membranes. Images given as
:class:`~spikefab.sim.encoding.Pixels` (the chip's encoder) go to a chip with the encoder as
one ENCODE each, carrying the pixels; to any other, as the spikes the encoder would draw.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..hdl.abi import (ADDRESS, ADDRESS_BYTES, COUNTER_BITS, EVENT, INPUT_HEAD, MAX_OUTPUTS,
                       MAX_PAYLOAD, MAX_RUN_TICKS, OUTPUT_BYTES, OUTPUTS_MAX, READ_COUNT,
                       RUN_TICKS, TICK_BITS, ChipInfo, Command, LinkStatus, ProtocolError, Region,
                       Register, Status, to_signed)
from ..sim.encoding import Pixels
from ..sim.golden import decode
from .protocol import (AXONS_PER_INPUT, EVENTS_PER_RUN, SlipDecoder, encode_payload, frame,
                       input_payload, outputs_payload, parse_body, parse_encode_answer,
                       parse_run_answer, read_payload, run_payload, unpack_outputs,
                       write_payload)

__all__ = ["LinkError", "Transport", "SerialTransport", "Link", "LinkCounters", "image_frames",
           "RunResult", "check_spikes", "ChipBase", "LinkChip"]


#: Output ticks wrap at the field's width.
TICK_MASK = (1 << TICK_BITS) - 1


class LinkError(RuntimeError):
    """The chip did not answer, answered with a NAK, or answered something malformed."""


def _name(command) -> str:
    return Command(command).name if command in Command._value2member_map_ else hex(command)


# ---- transports ----

class Transport(Protocol):
    """What a :class:`Link` sends its frames through: an in-process transport that loses
    nothing (:meth:`exchange`), or a line (:class:`SerialTransport`: ``send``, ``read_frame``,
    ``drain`` and ``timeout``), which the link drives frame by frame."""

    #: Most frames one :meth:`exchange` may carry (None: any number).
    window: int | None

    def exchange(self, data: bytes) -> bytes:
        """Send ``data`` (whole frames); return the bytes of every answer to them."""

    def close(self) -> None:
        ...


class SerialTransport:
    """A board on a serial port (pyserial; ``socket://HOST:PORT`` and other pyserial URLs
    too). One frame in flight at a time: the chip holds one request while it works, and a
    UART has no flow control. :class:`Link` drives it frame by frame (:meth:`send`,
    :meth:`read_frame`, :meth:`drain`) so that it can recover from a bad line."""
    window = 1

    def __init__(self, port: str, *, baudrate: int = 3_000_000, timeout: float = 2.0):
        try:
            import serial
        except ImportError:
            raise LinkError("the serial target needs pyserial: pip install pyserial") from None
        try:
            self.serial = serial.serial_for_url(port, baudrate=baudrate, timeout=0.01)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open serial port {port!r}: {exc}. Is the board plugged "
                            f"in, and is this its port?") from None
        self.port = port
        self.timeout = timeout
        self._decoder = SlipDecoder()
        self._frames: list = []

    def send(self, data: bytes) -> None:
        self.serial.write(data)

    def read_frame(self, timeout: float):
        """The next frame the chip sends, ``(body, error)``, or None after ``timeout`` seconds
        without one."""
        deadline = time.monotonic() + timeout
        while not self._frames:
            chunk = self.serial.read(4096)
            if chunk:
                self._frames += self._decoder.feed(chunk)
            elif time.monotonic() > deadline:
                return None
        return self._frames.pop(0)

    def drain(self, quiet: float = 0.02) -> int:
        """Throw away whatever the chip is still sending, until the line has been quiet for
        ``quiet`` seconds; the bytes thrown away (frames already cut included)."""
        dropped = sum(len(body) for body, _ in self._frames) + len(self._frames)
        self._frames.clear()
        last = time.monotonic()
        while time.monotonic() - last < quiet:
            chunk = self.serial.read(4096)
            if chunk:
                dropped += len(chunk)
                last = time.monotonic()
        self._decoder.discard()
        return dropped

    def close(self):
        self.serial.close()


# ---- the protocol client ----

#: NAKs that mean the request was damaged on the way (it did nothing; send it again).
LINE_NAKS = (Status.CRC, Status.SHORT, Status.OVERSIZE, Status.ESCAPE)
#: Requests whose payload may be split over several requests with the same effect.
_SPLITTABLE = (Command.WRITE, Command.RUN, Command.INPUT, Command.READ, Command.OUTPUTS)
#: The smallest payload a frame is cut to on a bad line (bytes).
MIN_FRAME_PAYLOAD = 24
#: Requests a :meth:`Link.stream` hands a simulator at once.
STREAM_BATCH = 16


@dataclass
class LinkCounters:
    """What a :class:`Link` did to get its answers through."""
    requests: int = 0      #: requests answered OK
    retries: int = 0       #: requests sent again (same seq: the chip answers a repeat once)
    resyncs: int = 0       #: times the line was drained of bytes nobody asked for
    stray: int = 0         #: answers skipped: another seq, a NAK for noise, a corrupted frame
    splits: int = 0        #: requests cut in smaller ones for a bad line

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class Link:
    """Requests and answers over a transport.

    Over a transport that offers :meth:`SerialTransport.read_frame` (a board's line), every
    request is sent alone and its answer waited for: answers with another seq, NAKs for line
    noise are skipped; a request refused as damaged (CRC, SHORT, OVERSIZE, ESCAPE), left
    unanswered or answered with a corrupted frame is sent again with the same seq (the chip
    answers a repeat without executing it twice), after draining the line, at most
    ``retries`` times; and the frames get shorter while the line keeps damaging them (a WRITE,
    RUN, INPUT or READ then goes as several requests with the same effect, RUN and INPUT only
    if the chip refused the long one, since it may have run otherwise). :attr:`counters` says
    what that took. Other transports (the simulator, the model) lose nothing: their requests are
    pipelined and any surprise is an error.
    """

    def __init__(self, transport, *, retries: int = 20):
        self.transport = transport
        self.retries = retries
        self.counters = LinkCounters()
        self.frame_payload = MAX_PAYLOAD   # the most payload a frame carries (bad line: less)
        self._good = 0
        self._seq = 0
        self.info = None
        self.info = ChipInfo.decode(self.request(Command.INFO))

    def _next_seq(self) -> int:
        self._seq = self._seq % 255 + 1     # seq 0 is reserved for NAKs of unreadable frames
        return self._seq

    def _frame(self, command, payload=b"") -> tuple[int, bytes]:
        seq = self._next_seq()
        return seq, frame(seq, command, payload)

    def batch(self, requests: list[tuple[int, bytes]]) -> list[bytes]:
        """Send requests (pipelined where the transport allows); their OK payloads, in order."""
        if hasattr(self.transport, "read_frame"):
            return [self._over_the_line(c, p) for c, p in requests]
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
                    raise LinkError(f"the chip refused {_name(command)}: "
                                    f"{Status(status).describe()}")
                answers.append(payload)
                self.counters.requests += 1
        return answers

    # ---- a bad line ----
    def _over_the_line(self, command, payload) -> bytes:
        """One request over a line that may lose, damage or add bytes: its OK payload."""
        pieces = self._split(command, payload)
        if len(pieces) > 1:
            self.counters.splits += 1
            answers = [self._over_the_line(command, piece) for piece in pieces]
            return b"".join(answers) if command == Command.READ else answers[-1]
        payload = pieces[0]   # an OUTPUTS asks for no more events than a frame now carries
        seq, data = self._frame(command, payload)
        transport = self.transport
        maybe_done = False   # an attempt went unanswered: the chip may have executed it
        for attempt in range(self.retries + 1):
            if attempt:
                self.counters.retries += 1
                if transport.drain():
                    self.counters.resyncs += 1
            transport.send(data)
            outcome = self._answer(seq, command)
            if isinstance(outcome, bytes):
                self._line_ok()
                return outcome
            self._line_bad()
            maybe_done = maybe_done or outcome == "lost"
            # Smaller requests (new seqs) do the same if no attempt can have been executed
            # (each refused as damaged), or if doing it twice is harmless (the same words
            # written, or read).
            again_is_harmless = not maybe_done or command in (Command.WRITE, Command.READ)
            if again_is_harmless and len(self._split(command, payload)) > 1:
                return self._over_the_line(command, payload)
        raise LinkError(f"no good answer to {_name(command)} from {getattr(transport, 'port', '')} "
                        f"after {self.retries + 1} tries: the line is too noisy or the board "
                        f"stopped answering ({self.counters.retries} retries so far)")

    def _answer(self, seq: int, command):
        """Wait for the answer to ``seq``: its payload, or "damaged" (a NAK for line damage:
        nothing done) or "lost" (no answer in time, or a corrupted one)."""
        transport = self.transport
        deadline = time.monotonic() + transport.timeout
        while True:
            got = transport.read_frame(max(deadline - time.monotonic(), 0.0))
            if got is None:
                return "lost"
            body, error = got
            try:
                got_seq, status, payload = parse_body(body, error)
            except ProtocolError:
                # Most likely our answer, damaged (the chip sends nothing unasked): ask again
                # at once rather than wait out the timeout.
                self.counters.stray += 1
                return "lost"
            if got_seq != seq:
                self.counters.stray += 1     # an old answer, or a NAK for noise
                continue
            if status == Status.OK:
                self.counters.requests += 1
                return payload
            if status in LINE_NAKS:
                return "damaged"
            raise LinkError(f"the chip refused {_name(command)}: {Status(status).describe()}")

    def _line_ok(self) -> None:
        self._good += 1
        if self._good >= 16 and self.frame_payload < MAX_PAYLOAD:
            self.frame_payload = min(MAX_PAYLOAD, self.frame_payload * 2)
            self._good = 0

    def _line_bad(self) -> None:
        self._good = 0
        self.frame_payload = max(MIN_FRAME_PAYLOAD, self.frame_payload // 2)

    def _split(self, command, payload) -> list[bytes]:
        """``payload`` as the payloads of requests that fit :attr:`frame_payload` (request
        and answer) and do together what it does; ``[payload]`` when it fits or cannot be
        split."""
        budget = self.frame_payload
        if self.info is None or command not in _SPLITTABLE:
            return [payload]
        wb = self.info.word_bytes
        if command == Command.WRITE:
            per = max(1, (budget - ADDRESS_BYTES) // wb)
            tile, region, offset = ADDRESS.unpack_from(payload)
            words = payload[ADDRESS_BYTES:]
            n = len(words) // wb
            if n <= per:
                return [payload]
            return [ADDRESS.pack(tile, region, offset + k) + words[k * wb:(k + per) * wb]
                    for k in range(0, n, per)]
        if command == Command.READ:
            tile, region, offset = ADDRESS.unpack_from(payload)
            (count,) = READ_COUNT.unpack_from(payload, ADDRESS_BYTES)
            per = max(1, budget // wb)
            if count <= per:
                return [payload]
            return [read_payload(tile, region, offset + k, min(per, count - k))
                    for k in range(0, count, per)]
        if command == Command.OUTPUTS:   # "up to": fewer is the same request, answered less
            (most,) = OUTPUTS_MAX.unpack(payload)
            return [outputs_payload(min(most, max(1, budget // OUTPUT_BYTES)))]
        head = RUN_TICKS.size if command == Command.RUN else INPUT_HEAD.size
        items = payload[head:]
        per = max(1, (budget - head) // EVENT.size)
        if len(items) // EVENT.size <= per:
            return [payload]
        chunks = [items[k:k + per * EVENT.size] for k in range(0, len(items), per * EVENT.size)]
        if command == Command.RUN:
            (ticks,) = RUN_TICKS.unpack_from(payload)
            return [RUN_TICKS.pack(0 if k < len(chunks) - 1 else ticks) + c
                    for k, c in enumerate(chunks)]
        tiles, ticks = INPUT_HEAD.unpack_from(payload)
        return [INPUT_HEAD.pack(tiles, 0 if k < len(chunks) - 1 else ticks) + c
                for k, c in enumerate(chunks)]

    def request(self, command, payload=b"") -> bytes:
        return self.batch([(command, payload)])[0]

    def stream(self, requests):
        """The OK payload of each of ``requests``, in order, as they come: the next requests
        are sent while the chip runs one, as many bytes ahead as its queue takes
        (``info.rx_queue``), so that their bytes travel while it works and answers. Only for
        requests that give the same answer when run twice (an ENCODE that clears the chip and
        reports): over a line that loses an answer, the requests from that one on are sent
        again one at a time, and some of them may have run already (the results are the
        same; the chip's counters, synaptic ops among them, count both runs). A consumer that
        stops early leaves answers on the line, which the next request skips."""
        requests = list(requests)
        if not hasattr(self.transport, "read_frame"):
            # Nothing is lost: the chip's queue, and the simulator's hold on the line when it
            # is full, pipeline a batch.
            for k in range(0, len(requests), STREAM_BATCH):
                yield from self.batch(requests[k:k + STREAM_BATCH])
            return
        room = self.info.rx_queue
        sent = deque()        # (seq, command, payload, bytes): sent, not answered yet
        k = 0
        while k < len(requests) or sent:
            while k < len(requests):
                ahead = sum(len(data) for *_, data in list(sent)[1:])
                seq = self._seq % 255 + 1
                data = frame(seq, *requests[k])
                if sent and ahead + len(data) > room:
                    break
                self._next_seq()
                self.transport.send(data)
                sent.append((seq, *requests[k], data))
                k += 1
            seq, command, payload, _ = sent.popleft()
            outcome = self._answer(seq, command)
            if isinstance(outcome, bytes):
                self._line_ok()
                yield outcome
                continue
            self._line_bad()
            self.counters.retries += 1
            # Every request sent after it may have run, or not: each again, alone.
            again = [(command, payload)] + [(c, p) for _, c, p, _ in sent]
            sent.clear()
            if self.transport.drain():
                self.counters.resyncs += 1
            for command, payload in again:
                yield self._over_the_line(command, payload)

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
    link: dict | None = None       #: what the link did to get through (LinkCounters, a line)
    #: (images,) synaptic ops and mesh clock cycles of each image, when the run was asked for
    #: them (``per_image=True``); ``None`` otherwise
    sops_per_image: np.ndarray | None = field(default=None, repr=False)
    cycles_per_image: np.ndarray | None = field(default=None, repr=False)

    @property
    def images(self) -> int:
        return len(self.predictions)


def check_pixels(pixels: Pixels, inputs) -> Pixels:
    if pixels.images.ndim != 2 or pixels.images.shape[1] != inputs:
        raise ValueError(f"the images must have {inputs} pixels each (the network's inputs), "
                         f"not shape {pixels.images.shape}")
    return pixels


def check_spikes(spikes, inputs) -> np.ndarray:
    """``spikes`` as an array of shape ``(steps, images, inputs)``; :class:`Pixels` as the
    spikes the chip's encoder draws for them."""
    if isinstance(spikes, Pixels):
        return check_pixels(spikes, inputs).spikes()
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

    def run(self, spikes, *, progress=None, outputs: bool = True,
            per_image: bool = False) -> RunResult:
        """Every image of ``spikes``, one after the other (``outputs`` is accepted for
        symmetry with :meth:`GoldenChip.run`; the events are always listed).

        ``per_image``: also count each image's synaptic ops and cycles (``RunResult.
        sops_per_image``, ``cycles_per_image``), reading the counters after every image. An
        image's count then spans the same requests wherever it falls in a run (its own, the
        counter reads and STATUS), so it does not depend on which images ran before it: how
        runs split over workers cannot change it."""
        image, info, link = self.image, self.info, self.link
        if image is None:
            raise ValueError("load an image first")
        pixels = check_pixels(spikes, image.inputs) if isinstance(spikes, Pixels) else None
        if pixels is None:
            spikes = check_spikes(spikes, image.inputs)
            steps, count, _ = spikes.shape
        else:
            steps, count = pixels.steps, len(pixels)
        # A class's place: its tile's output records name (x, y, neuron).
        class_of = {(*o.tile, j): o.first + j for o in image.outputs for j in range(o.count)}
        # Input spikes go to every core of layer 0 at one axon each on the wire: RUN's events
        # when layer 0 is one core, else INPUT naming its cores (whose tile set costs 8 bytes
        # a frame more than RUN).
        input_tiles = sum(1 << info.tile_index(x, y) for x, y in image.input_tiles)
        one_tile = image.input_tiles[0] if len(image.input_tiles) == 1 else None
        start, sops0 = time.perf_counter(), self._sops()
        status0 = link.status()
        counters0 = link.counters.as_dict()
        counts = np.zeros((count, image.classes), np.int64)
        final_v = np.zeros((count, image.classes), np.int64)
        outputs = []
        mask = (1 << COUNTER_BITS) - 1
        sops_each = np.zeros(count, np.int64) if per_image else None
        cycles_each = np.zeros(count, np.int64) if per_image else None
        sops_before, cycles_before = sops0, status0.cycles
        # With the encoder, an image is one ENCODE that clears the chip, runs the image and
        # its drain ticks, and answers with its outputs and the first output tile's membranes.
        reported = image.outputs[0]
        report = (info.tile_index(*reported.tile), reported.count)
        encodes = [None] * count
        if pixels is not None and info.encoder and steps <= MAX_RUN_TICKS:
            for b in range(count):
                payload = encode_payload(input_tiles, steps, int(pixels.states[b]),
                                         pixels.images[b], drain=image.drain_ticks,
                                         clear=True, report=report)
                # Too many pixels for a frame: their spikes instead.
                encodes[b] = payload if len(payload) <= MAX_PAYLOAD else None
        # Consecutive ENCODEs are streamed (the next sent while the chip runs one), unless
        # every image's counters are read between them.
        stream, stream_end = None, 0
        for b in range(count):
            final = {}
            if encodes[b] is not None:
                if per_image:
                    [answer] = link.batch([(Command.ENCODE, encodes[b])])
                else:
                    if b >= stream_end:
                        stream_end = next((j for j in range(b, count) if encodes[j] is None),
                                          count)
                        stream = link.stream([(Command.ENCODE, encodes[j])
                                              for j in range(b, stream_end)])
                    answer = next(stream)
                last_tick, pending, got, membranes = parse_encode_answer(answer, report[1])
                if pending > len(got) and b + 1 < stream_end:
                    # The rest of its outputs went with the next image's CLEAR: run it again
                    # alone, and fetch them; the stream starts again after it.
                    stream.close()
                    stream_end = b + 1
                    [answer] = link.batch([(Command.ENCODE, encodes[b])])
                    last_tick, pending, got, membranes = parse_encode_answer(answer, report[1])
                final[0] = membranes
            else:
                requests = [(Command.RESET, b"")] + self._spike_requests(
                    spikes[:, b] if pixels is None else pixels.image_spikes(b), one_tile,
                    input_tiles)
                if image.drain_ticks:
                    requests.append((Command.RUN, run_payload(image.drain_ticks)))
                last_tick, pending = parse_run_answer(link.batch(requests)[-1])
                got = []
            first_tick = last_tick - steps - image.drain_ticks   # ticks count from the image
            pending -= len(got)
            while pending:
                more = unpack_outputs(link.request(Command.OUTPUTS,
                                                   outputs_payload(min(pending, MAX_OUTPUTS))))
                got += more
                pending -= len(more)
            events = [(x, y, n, (tick - first_tick) & TICK_MASK) for x, y, n, tick in got]
            outputs.append(events)
            for x, y, neuron, _ in events:
                c = class_of.get((x, y, neuron))
                if c is not None:
                    counts[b, c] += 1
            for k, o in enumerate(image.outputs):
                if k not in final:
                    tile = info.tile_index(*o.tile)
                    final[k] = [to_signed(w, info.tiles[tile].v_bits)
                                for w in link.read(tile, Region.MEMBRANE, 0, o.count)]
                final_v[b, o.first:o.first + o.count] = final[k]
            if per_image:
                sops_now, cycles_now = self._sops(), link.status().cycles
                sops_each[b] = sops_now - sops_before
                cycles_each[b] = (cycles_now - cycles_before) & mask
                sops_before, cycles_before = sops_now, cycles_now
            if progress:
                progress(b + 1, count)
        status = link.status()
        lost = (status.output_drops - status0.output_drops) & mask
        if lost:
            raise LinkError(f"the chip's output queue ({info.output_depth} events) overflowed "
                            f"during the run: {lost} output events were dropped, so the counts "
                            f"would be wrong. The network spikes more at its outputs than "
                            f"this chip keeps between reads")
        # The model behind ModelTransport has no clock (its count stays 0).
        cycles = (status.cycles - status0.cycles) & mask or None
        used = {k: v - counters0[k] for k, v in link.counters.as_dict().items()}
        return RunResult(self.target, decode(counts, final_v), counts, final_v, outputs,
                         self._sops() - sops0, cycles, time.perf_counter() - start, used,
                         sops_each, cycles_each)

    @staticmethod
    def _spike_requests(spikes, one_tile, input_tiles) -> list[tuple[int, bytes]]:
        """An image's input ticks as requests, ``spikes`` of shape ``(steps, inputs)``: per
        tick, a RUN of its events (layer 0 on one core, ``one_tile``) or an INPUT naming
        ``input_tiles``, split where they do not fit a frame, the last one running the tick."""
        requests = []
        for t in range(spikes.shape[0]):
            axons = np.repeat(np.arange(spikes.shape[1]), spikes[t]).tolist()
            per = EVENTS_PER_RUN if one_tile else AXONS_PER_INPUT
            chunks = [axons[k:k + per] for k in range(0, len(axons), per)] or [[]]
            for k, chunk in enumerate(chunks):
                ticks = 1 if k == len(chunks) - 1 else 0
                requests.append(
                    (Command.RUN, run_payload(ticks, [(*one_tile, a) for a in chunk]))
                    if one_tile else
                    (Command.INPUT, input_payload(input_tiles, ticks, chunk)))
        return requests

    def close(self):
        self.link.transport.close()
