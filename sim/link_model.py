"""The golden model of a chip behind its host link: bytes in, bytes out, like a board.

:class:`LinkModel` keeps every memory of every tile as the gateware stores it (raw synapse
words, membranes truncated to ``v_bits``, raw route-table entries, registers with the
gateware's rules for refusing invalid values) and runs ticks with the golden chip model
(:class:`~spikefab.sim.chip.ChipModel`). It answers requests exactly as ``hdl/host_link.py``
does, so it stands in for a board (the ``serial`` transport's tests) and is the reference the
RTL host link is checked against. Output events within one tick may leave the hardware in
another order; compare those as multisets.

The line's side of the link is modelled too: a request repeated with its ``seq`` and command is
answered without being executed again (:mod:`spikefab.firmware.protocol`, "Sequence numbers
and repeats"), and :meth:`LinkModel.idle` stands for the line falling silent, which drops a
half-received frame.
"""

from __future__ import annotations

import numpy as np

from ..firmware.protocol import (SlipDecoder, frame, pack_outputs, parse_body,
                                 parse_input, parse_memory_request, parse_outputs_request,
                                 parse_run, run_answer)
from ..hdl.abi import (COUNTER_BITS, COUNTERS, MAX_OUTPUTS, MAX_RUN_TICKS, NO_SEQ, REGISTERS,
                       REPORT_BYTES, report_outputs,
                       ROUTE_INDEX_BITS, TICK_BITS, ChipInfo, Command, CoreMemoryMap, LinkStatus,
                       ProtocolError, Region, Register, ResetMode, RouteDest, RouteEntry, Status,
                       unpack_route_dest, unpack_route_entry)
from .chip import ChipModel, ChipProgram, CoreProgram
from .golden import NeuronConfig

__all__ = ["LinkModel", "ModelTransport"]

COUNTER_MASK = (1 << COUNTER_BITS) - 1
SHORT_COUNTER_MASK = 0xFFFF   # the link's own counts in STATUS
#: Requests that change nothing: a repeat of one is executed afresh.
_PURE = (Command.INFO, Command.READ, Command.STATUS)


class _Tile:
    """The memories of one tile, as stored by the gateware."""

    def __init__(self, info):
        self.info = info
        self.shape = info.shape
        self.memory_map = CoreMemoryMap(self.shape, info.lanes)
        self.synapse = [0] * self.memory_map.synapse_words
        self.bias = np.zeros(info.neurons, np.int64)
        #: The parameters, as the core's registers hold them.
        self.params = {r: spec.reset_of(self.shape) for r, spec in REGISTERS.items()
                       if not spec.counter}
        self.route_index = [0] * info.regions[Region.ROUTE_INDEX]
        self.route_dest = [0] * info.regions[Region.ROUTE_DEST]
        self._weights = None

    def write_synapse(self, offset: int, word: int) -> None:
        self.synapse[offset] = word & ((1 << (self.info.lanes * self.info.w_bits)) - 1)
        self._weights = None

    def weights(self) -> np.ndarray:
        if self._weights is None:
            self._weights = np.array(self.memory_map.weights_of(self.synapse), np.int64)
        return self._weights

    def routes(self):
        depth = len(self.route_dest)
        abits = max(depth - 1, 1).bit_length()
        routes, to_host = [], np.zeros(self.info.neurons, bool)
        for n, entry in enumerate(self.route_index):
            start, count, to_host[n] = unpack_route_entry(entry)
            dests = []
            for k in range(count):
                addr = ((start + k) & ((1 << ROUTE_INDEX_BITS) - 1)) & ((1 << abits) - 1)
                dests.append(unpack_route_dest(self.route_dest[addr] if addr < depth else 0))
            routes.append(dests)
        return routes, to_host


class LinkModel:
    """A chip (described by ``info``) behind its host link.

    Feed it the bytes a host sends with :meth:`receive`; it returns the bytes the chip sends
    back. State starts as the hardware's after reset: memories zero, threshold at its largest,
    no leak, subtract reset.
    """

    def __init__(self, info: ChipInfo):
        self.info = info
        self.tiles = [_Tile(t) for t in info.tiles]
        self.positions = [(k % info.cols, k // info.cols) for k in range(len(info.tiles))]
        self._decoder = SlipDecoder()
        self.outputs: list[tuple[int, int, int, int]] = []
        #: Events the last OUTPUTS answered with, kept until a request other than its repeat.
        self.taken: list[tuple[int, int, int, int]] = []
        self.output_drops = 0
        self.frames = self.bad_frames = self.naks = 0
        self.repeats = self.timeouts = 0
        self._last = None   # (seq, command) of the last request answered OK
        self._reported = None   # the last ENCODE's report: (tile, count), or None
        self._model = None   # built on RUN, dropped on any memory access
        self._ticks = 0
        self._mesh_drops = 0
        # Dynamic state while no model is built.
        self._v = [np.zeros(t.neurons, np.int64) for t in info.tiles]
        self._i = [np.zeros(t.neurons, np.int64) for t in info.tiles]
        self._delivered = [0] * len(info.tiles)
        self._counters = [dict.fromkeys(COUNTERS, 0) for _ in info.tiles]

    # ---- bytes ----
    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        for body, error in self._decoder.feed(data):
            out += self.handle(body, error)
        return bytes(out)

    def idle(self) -> None:
        """The line has been silent for the inter-byte timeout: a frame half received is
        dropped, unanswered, and counted."""
        if self._decoder.pending:
            self._decoder.discard()
            self.timeouts += 1

    def handle(self, body: bytes, error=None) -> bytes:
        """The response frame to one received frame body."""
        self.frames += 1
        try:
            seq, command, payload = parse_body(body, error)
        except ProtocolError as exc:
            self.bad_frames += 1
            self.naks += 1
            seq = body[0] if len(body) >= 4 else NO_SEQ
            command = body[1] if len(body) >= 4 else 0
            return frame(seq, exc.status, bytes([command]))
        try:
            if seq == NO_SEQ:
                raise ProtocolError(Status.SEQUENCE, "a request with seq 0")
            command = self._check(command, payload)
        except ProtocolError as exc:
            self.naks += 1
            return frame(seq, exc.status, bytes([command]))
        repeat = self._last == (seq, command)
        if repeat:
            self.repeats += 1
            if command not in _PURE:
                return frame(seq, Status.OK, self._answer_again(command))
        else:
            # The events the last OUTPUTS answered with leave the queue for good.
            self.taken = []
            self._last = (seq, command)
        return frame(seq, Status.OK, self._execute(command, payload))

    # ---- commands ----
    def _check(self, command: int, payload: bytes) -> Command:
        """Refuse a request as the gateware does before executing anything: ``ProtocolError``
        with the NAK's status. The checks depend on the chip's INFO alone, not its state."""
        info = self.info
        try:
            command = Command(command)
        except ValueError:
            raise ProtocolError(Status.COMMAND, f"unknown command 0x{command:02x}") from None
        if command in (Command.INFO, Command.STATUS, Command.RESET):
            if payload:
                raise ProtocolError(Status.LENGTH, f"{command.name} takes no payload")
        elif command in (Command.WRITE, Command.READ, Command.FILL):
            request = parse_memory_request(command, payload, info.word_bytes)
            if command is Command.READ and not 1 <= request.count <= info.max_read_words:
                raise ProtocolError(Status.ARGUMENT, f"READ of {request.count} words")
            if command is Command.FILL and request.count < 1:
                raise ProtocolError(Status.ARGUMENT, "FILL of 0 words")
            info.check_range(request.tile, request.region, request.offset, request.count)
        elif command is Command.RUN:
            ticks, events = parse_run(payload)
            if ticks > MAX_RUN_TICKS:
                raise ProtocolError(Status.ARGUMENT, f"RUN of {ticks} ticks")
            for x, y, axon in events:
                if not info.accepts_event(x, y, axon):
                    raise ProtocolError(Status.ADDRESS, f"event {(x, y, axon)} is outside "
                                                        f"the chip")
        elif command is Command.INPUT:
            tiles, ticks, axons = parse_input(payload)
            if tiles == 0:
                raise ProtocolError(Status.ARGUMENT, "INPUT names no tile")
            if ticks > MAX_RUN_TICKS:
                raise ProtocolError(Status.ARGUMENT, f"INPUT of {ticks} ticks")
            info.input_events(tiles, axons)
        elif command is Command.ENCODE:
            info.encode_events(payload)
        elif command is Command.OUTPUTS:
            most = parse_outputs_request(payload)
            if most > MAX_OUTPUTS:
                raise ProtocolError(Status.ARGUMENT, f"OUTPUTS of up to {most} events")
        return command

    def _answer_again(self, command: Command) -> bytes:
        """A repeat's answer, the first one's again, without executing anything."""
        if command in (Command.RUN, Command.INPUT):
            return run_answer(self._ticks, len(self.outputs))
        if command is Command.ENCODE:
            # Its report's outputs go out again (rewound): as many pending as the first time.
            answer = run_answer(self._ticks, len(self.taken) + len(self.outputs))
            return answer + (self._report() if self._reported else b"")
        if command is Command.OUTPUTS:
            return pack_outputs(self.taken)
        return b""

    def _execute(self, command: Command, payload: bytes) -> bytes:
        """A checked request, executed; its answer's payload."""
        info = self.info
        wb = info.word_bytes
        if command is Command.INFO:
            return info.encode()
        if command is Command.STATUS:
            return self.status().encode()
        if command is Command.RESET:
            self._reset()
            return b""
        if command in (Command.WRITE, Command.READ, Command.FILL):
            request = parse_memory_request(command, payload, wb)
            tile, region, offset = request.tile, request.region, request.offset
            self._sync_out()
            if command is Command.READ:
                return b"".join(self._read(tile, region, offset + k).to_bytes(wb, "little")
                                for k in range(request.count))
            for k in range(request.count):
                word = request.words[0] if command is Command.FILL else request.words[k]
                self._write(tile, region, offset + k, word)
            return b""
        if command is Command.RUN:
            ticks, events = parse_run(payload)
            self._run(events, ticks)
            return run_answer(self._ticks, len(self.outputs))
        if command is Command.INPUT:
            tiles, ticks, axons = parse_input(payload)
            self._run(info.input_events(tiles, axons), ticks)
            return run_answer(self._ticks, len(self.outputs))
        if command is Command.ENCODE:
            request = info.encode_events(payload)
            if request.clear:
                self._reset()
            self._run((), request.ticks + request.drain, request.events)
            answer = run_answer(self._ticks, len(self.outputs))
            self._reported = request.report
            if request.report:
                most = report_outputs(request.report[1])
                self.taken, self.outputs = self.outputs[:most], self.outputs[most:]
                answer += self._report()
            return answer
        if command is Command.OUTPUTS:
            most = parse_outputs_request(payload)
            self.taken, self.outputs = self.outputs[:most], self.outputs[most:]
            return pack_outputs(self.taken)
        raise AssertionError(command)

    def _reset(self) -> None:
        """RESET's work: membranes and accumulators zeroed, the output queue emptied."""
        self._sync_out()
        for k in range(len(self.tiles)):
            self._v[k][:] = 0
            self._i[k][:] = 0
        self.outputs.clear()

    def _report(self) -> bytes:
        """An ENCODE's report: the outputs it took, then the membranes it names."""
        tile, count = self._reported
        self._sync_out()
        mask = (1 << 8 * REPORT_BYTES) - 1
        return pack_outputs(self.taken) + b"".join(
            (self._read(tile, Region.MEMBRANE, n) & mask).to_bytes(REPORT_BYTES, "little")
            for n in range(count))

    def status(self) -> LinkStatus:
        short = SHORT_COUNTER_MASK
        return LinkStatus(self._ticks & COUNTER_MASK, self._mesh_drops & COUNTER_MASK,
                          self.output_drops & COUNTER_MASK, len(self.outputs),
                          self.frames & short, self.bad_frames & short, self.naks & short)

    # ---- memories ----
    def _read(self, k: int, region: int, offset: int) -> int:
        tile, info = self.tiles[k], self.info.tiles[k]
        core_mask = (1 << info.data_bits) - 1
        if region == Region.SYNAPSE:
            return tile.synapse[offset]
        if region == Region.MEMBRANE:
            return int(self._v[k][offset]) & core_mask
        if region == Region.BIAS:
            return int(tile.bias[offset]) & core_mask
        if region == Region.ACCUMULATOR:
            return int(self._i[k][offset]) & core_mask
        if region == Region.REGISTER:
            register = Register(offset)
            if REGISTERS[register].counter:
                return self._counters[k][register] & COUNTER_MASK
            return tile.params[register]
        if region == Region.ROUTE_INDEX:
            return tile.route_index[offset]
        return tile.route_dest[offset]

    def _write(self, k: int, region: int, offset: int, word: int) -> None:
        tile, info = self.tiles[k], self.info.tiles[k]
        word &= (1 << info.data_bits) - 1      # the core's bus is this wide
        if region == Region.SYNAPSE:
            tile.write_synapse(offset, word)
        elif region == Region.MEMBRANE:
            self._v[k][offset] = tile.memory_map.to_signed(word, info.v_bits)
        elif region == Region.BIAS:
            tile.bias[offset] = tile.memory_map.to_signed(word, info.v_bits)
        elif region == Region.ACCUMULATOR:     # a write clears I
            self._i[k][offset] = 0
        elif region == Region.REGISTER:
            # A write clears a counter; a parameter value the golden model would reject is
            # ignored, as in the core.
            spec = REGISTERS[Register(offset)]
            if spec.counter:
                self._counters[k][spec.register] = 0
            elif spec.accepts(tile.shape, word):
                tile.params[spec.register] = word
        elif region == Region.ROUTE_INDEX:
            tile.route_index[offset] = word & ((1 << RouteEntry.size) - 1)
        else:
            tile.route_dest[offset] = word & ((1 << RouteDest.size) - 1)

    # ---- running ----
    def program(self) -> ChipProgram:
        """What the memories hold, as a golden chip program (weights, parameters, routes)."""
        cores = {}
        for k, tile in enumerate(self.tiles):
            routes, to_host = tile.routes()
            params = tile.params
            config = NeuronConfig(params[Register.THRESHOLD], params[Register.LEAK],
                                  ResetMode(params[Register.RESET]))
            cores[self.positions[k]] = CoreProgram(
                tile.shape, config,
                tile.weights(), tile.bias.copy(), routes, to_host)
        return ChipProgram(self.info.cols, self.info.rows, cores, tuple(self.info.host))

    def _build(self) -> ChipModel:
        """A golden chip from the memories, carrying the dynamic state over."""
        model = ChipModel(self.program())
        model.tick, model.mesh_drops = self._ticks, self._mesh_drops
        for k, position in enumerate(self.positions):
            core = model.cores[position]
            core.v[0] = self._v[k]
            core.i[0] = self._i[k]
            core._delivered[0] = self._delivered[k]
            for register, value in self._counters[k].items():
                setattr(core.counters, REGISTERS[register].name, value)
        return model

    def _sync_out(self) -> None:
        """Copy the model's dynamic state back into the memories, and forget the model."""
        model = self._model
        if model is None:
            return
        self._ticks, self._mesh_drops = model.tick, model.mesh_drops
        for k, position in enumerate(self.positions):
            core = model.cores[position]
            self._v[k] = core.v[0].copy()
            self._i[k] = core.i[0].copy()
            self._delivered[k] = int(core._delivered[0])
            self._counters[k] = {register: getattr(core.counters, REGISTERS[register].name)
                                 for register in COUNTERS}
        self._model = None

    def _run(self, events, ticks: int, per_tick=None) -> None:
        """``events`` injected, then ``ticks`` ticks run, with ``per_tick[t]``'s events
        injected before tick ``t`` (ENCODE's spikes)."""
        if self._model is None:
            self._model = self._build()
        model = self._model
        for x, y, axon in events:
            model.cores[x, y].deliver([axon])
        produced = []
        for t in range(ticks):
            for x, y, axon in (per_tick[t] if per_tick and t < len(per_tick) else ()):
                model.cores[x, y].deliver([axon])
            produced += [(x, y, neuron, tick & ((1 << TICK_BITS) - 1))
                         for x, y, neuron, tick in model.step()[0]]
            model.deliver_pending()
        # A run's outputs are kept all or none: which of them would fit a full queue depends
        # on the order they reach the link. (Events an OUTPUTS answered with hold their
        # places until the next request, which is this run's: none are left by now.)
        if len(self.outputs) + len(self.taken) + len(produced) <= self.info.output_depth:
            self.outputs += produced
        else:
            self.output_drops += len(produced)
        self._ticks, self._mesh_drops = model.tick, model.mesh_drops


class ModelTransport:
    """A :class:`LinkModel` as a driver transport (``firmware.driver.Transport``): the golden
    chip behind the protocol, in this process (tests, the golden target, a board stand-in)."""
    window = None   # any number of frames per exchange

    def __init__(self, info: ChipInfo):
        self.model = LinkModel(info)

    def exchange(self, data: bytes) -> bytes:
        return self.model.receive(data)

    def close(self):
        pass
