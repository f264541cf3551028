"""A mesh router node: XY routing of AER packets, input queues, round-robin output arbitration."""

import enum

from amaranth.hdl import *
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .abi import AERPacket, MESH_LIMIT, PacketKind

__all__ = ["Port", "PortSignature", "RouterNode", "xy_port"]


class Port(enum.IntEnum):
    NORTH = 0
    EAST = 1
    SOUTH = 2
    WEST = 3
    LOCAL = 4
    HOST = 5


#: One side of a router: packets in (``rx``) and out (``tx``), from the router's point of view.
def PortSignature(layout=AERPacket):
    return wiring.Signature({
        "rx": In(stream.Signature(layout)),
        "tx": Out(stream.Signature(layout)),
    })


def xy_port(here: tuple[int, int], there: tuple[int, int], arrived: Port) -> Port:
    """Dimension-order routing: first along x, then along y; ``arrived`` when ``here == there``."""
    (x, y), (tx, ty) = here, there
    if tx > x:
        return Port.EAST
    if tx < x:
        return Port.WEST
    if ty > y:
        return Port.SOUTH
    if ty < y:
        return Port.NORTH
    return arrived


def _select(one_hot: Value, values: list) -> Value:
    """The value whose bit is set in ``one_hot`` (zero if none): an AND-OR, no priority."""
    result = 0
    for i, value in enumerate(values):
        result = result | Mux(one_hot[i], Value.cast(value), 0)
    return result


class RouterNode(wiring.Component):
    """The router of tile ``(x, y)`` of a ``cols`` x ``rows`` mesh.

    Every input port has a queue of ``fifo_depth`` packets; every output port a register. With
    3 or more an input takes a packet every cycle; with 2 every other cycle at most (the queue
    is a register behind a one-entry queue, which refuses a write while full even in a cycle
    it is read: ``SyncFIFOBuffered``). The head packet of each queue goes to the
    port XY routing dictates (EVENT packets to their core's LOCAL port, OUTPUT packets to the
    HOST port of the tile named by ``host``); each output grants the requesting inputs round
    robin, so no input waits more than five grants of that output. XY routing on a mesh has no
    cyclic channel dependency, hence no deadlock.

    A packet for a tile outside the mesh, for an axon its core does not have, an OUTPUT packet
    in a mesh without a host, or a packet that would leave by the port it came in by (see
    :meth:`_route`), is dropped at the head of its queue, counted on ``dropped``, and
    never leaves.

    Parameters
    ----------
    x, y : int
        This tile.
    cols, rows : int
        The mesh, up to 8 x 8.
    axons : sequence of sequence of int
        ``axons[y][x]``: how many axons the core of each tile has.
    host : (int, int) or None
        The tile whose router has the HOST port.
    fifo_depth : int
        Input queue depth. 0 builds no queue: the head of an input is the sender's payload,
        routed in the cycle it is offered and taken (``ready``) in the next, on the
        registered decision, so the sender must hold its packet (a stream does) and sees a
        ``ready`` that depends on the router's registers only; for senders that are
        registers already, as a chip's are, that saves a register per port. Each input then
        takes a packet every other cycle at most, and each output loads one every other
        cycle (only while empty), so that no ready depends on another router's.
    stall_hook : bool
        Add a ``stall`` input that freezes the node (no packet moves in or out while it is
        high): a test hook for random stalls inside a mesh.
    layout : StructLayout
        The packet format; :data:`AERPacket` unless a narrower one with the same fields
        (``kind``, ``x``, ``y``, ``body.event.axon``) is wanted, e.g. to keep a proof small.
    edge_ports : bool
        Build the ports that face the mesh's edge too. XY routing never sends a packet there
        and no neighbour sends one from there, so a chip leaves them out (each costs a queue,
        an output register and its arbiter); a node tested alone keeps them, to be fed.

    Members
    -------
    north, east, south, west, local : Out(PortSignature(layout))
        Without ``edge_ports``, only the directions that have a neighbour.
    host : Out(PortSignature(layout))
        Only on the host's tile.
    dropped : Out(range(7))
        Packets dropped this cycle.
    """

    def __init__(self, *, x: int, y: int, cols: int, rows: int, axons, host=None,
                 fifo_depth: int = 2, stall_hook: bool = False, layout=AERPacket,
                 edge_ports: bool = True):
        for name, value, limit in (("cols", cols, MESH_LIMIT), ("rows", rows, MESH_LIMIT)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise ValueError(f"{name} must be an integer in [1, {limit}], not {value!r}")
        if not (isinstance(x, int) and 0 <= x < cols and isinstance(y, int) and 0 <= y < rows):
            raise ValueError(f"tile ({x!r}, {y!r}) is outside the {cols} x {rows} mesh")
        if len(axons) != rows or any(len(row) != cols for row in axons):
            raise ValueError(f"axons must be {rows} rows of {cols} axon counts, not {axons!r}")
        if host is not None and not (0 <= host[0] < cols and 0 <= host[1] < rows):
            raise ValueError(f"host tile {host!r} is outside the {cols} x {rows} mesh")
        if isinstance(fifo_depth, bool) or not isinstance(fifo_depth, int) or fifo_depth < 0:
            raise ValueError(f"fifo_depth must be a non-negative integer, not {fifo_depth!r}")
        self.position = (x, y)
        self.mesh = (cols, rows)
        self.axons = [list(row) for row in axons]
        self.host_tile = host
        self.fifo_depth = fifo_depth
        self.layout = layout
        neighbours = {Port.NORTH: y > 0, Port.EAST: x < cols - 1, Port.SOUTH: y < rows - 1,
                      Port.WEST: x > 0}
        self.ports = [port for port, there in neighbours.items() if there or edge_ports]
        self.ports.append(Port.LOCAL)
        if host == (x, y):
            self.ports.append(Port.HOST)
        members = {port.name.lower(): Out(PortSignature(layout)) for port in self.ports}
        members["dropped"] = Out(range(len(Port) + 1))
        if stall_hook:
            members["stall"] = In(1)
        self.stall_hook = stall_hook
        super().__init__(members)

    def port(self, port: Port):
        return getattr(self, port.name.lower())

    def _route(self, m, packet, arrived: Port):
        """Combinational decision for one head packet that came in by ``arrived``: (one-hot
        over self.ports, drop). A packet that would leave by the port it came in by is
        dropped: XY routing never sends one back (a neighbour sent it here because its target
        lies this way, and the host sends no OUTPUT packets), and without such paths no
        output's ready depends on the same port's input, which is what lets a chip's routers
        run without input queues (``fifo_depth=0``) and no combinational loop."""
        cols, rows = self.mesh
        x, y = self.position
        valid_event = Signal()
        for ty in range(rows):
            for tx in range(cols):
                with m.If((packet.x == tx) & (packet.y == ty)):
                    m.d.comb += valid_event.eq(packet.body.event.axon < self.axons[ty][tx])
        is_output = packet.kind == PacketKind.OUTPUT
        drop = Signal()
        tx = Mux(is_output, self.host_tile[0] if self.host_tile else 0, packet.x)
        ty = Mux(is_output, self.host_tile[1] if self.host_tile else 0, packet.y)
        want = {
            Port.EAST: tx > x,
            Port.WEST: tx < x,
            Port.SOUTH: (tx == x) & (ty > y),
            Port.NORTH: (tx == x) & (ty < y),
            Port.LOCAL: (tx == x) & (ty == y) & ~is_output,
            Port.HOST: (tx == x) & (ty == y) & is_output,
        }
        back = want[arrived] if arrived != Port.LOCAL else C(0)
        m.d.comb += drop.eq(Mux(is_output, self.host_tile is None, ~valid_event) | back)
        return Cat(C(0) if p == arrived != Port.LOCAL else want[p] for p in self.ports), drop

    def elaborate(self, platform):
        m = Module()
        n = len(self.ports)
        frozen = self.stall if self.stall_hook else C(0)
        heads = []
        for k, port in enumerate(self.ports):
            rx = self.port(port).rx
            if self.fifo_depth:
                fifo = SyncFIFOBuffered(width=self.layout.size, depth=self.fifo_depth)
                m.submodules[f"fifo_{port.name.lower()}"] = fifo
                wiring.connect(m, wiring.flipped(rx), fifo.w_stream)
                r_data, r_rdy, r_en = fifo.r_data, fifo.r_rdy, fifo.r_en
            else:   # the sender's payload is the head: taken (ready) when it is routed
                r_data, r_rdy, r_en = rx.payload, rx.valid, rx.ready
            head = Signal(self.layout, name=f"head_{port.name.lower()}")
            m.d.comb += head.eq(r_data)
            want, drop = self._route(m, head, port)
            want_s = Signal(n, name=f"want_{port.name.lower()}")
            drop_s = Signal(name=f"drop_{port.name.lower()}")
            if self.fifo_depth:
                m.d.comb += [want_s.eq(Mux(r_rdy & ~drop, want, 0)),
                             drop_s.eq(r_rdy & drop & ~frozen)]
            else:
                # The decision on the sender's packet is registered, and acted upon in the next
                # cycle, when the packet is still there (a stream holds an offered packet until
                # it is taken): the ready the sender sees is then a function of this router's
                # registers alone, not of its own packet through the routing decision (which
                # was one loop, sender -> decision -> grant -> ready -> sender's next state).
                # A decision made in the cycle the packet is taken is for the packet after it
                # and is discarded. An input takes a packet every other cycle at most.
                drop_q = Signal(name=f"drop_q_{port.name.lower()}")
                m.d.sync += [want_s.eq(Mux(r_en | ~r_rdy | drop, 0, want)),
                             drop_q.eq(~r_en & r_rdy & drop)]
                m.d.comb += drop_s.eq(drop_q & ~frozen)
            heads.append((r_en, head, want_s, drop_s))

        dropped = [drop_s for _, _, _, drop_s in heads]
        m.d.comb += self.dropped.eq(sum(dropped))
        pops = [Signal(name=f"pop_{port.name.lower()}") for port in self.ports]
        for k, (r_en, _, _, drop_s) in enumerate(heads):
            m.d.comb += r_en.eq(pops[k] | drop_s)

        grants = []   # per output: the one-hot grant over the inputs, and the load enable
        for o, out_port in enumerate(self.ports):
            tx = self.port(out_port).tx
            priority = Signal(range(n), name=f"rr_{out_port.name.lower()}")
            requests = Cat(want_s[o] for _, _, want_s, _ in heads)
            # Round robin: the first requester at or after `priority`, cyclically. The grant
            # is decided first and then selects one head (an AND-OR over the inputs): a chain
            # of multiplexers per priority value would copy the 31-bit payload path n times.
            grant = Signal(n, name=f"grant_{out_port.name.lower()}")
            with m.Switch(priority):
                for p in range(n):
                    with m.Case(p):
                        for off in reversed(range(n)):   # the last assignment wins
                            i = (p + off) % n
                            with m.If(requests[i]):
                                m.d.comb += grant.eq(1 << i)
            load = Signal(name=f"load_{out_port.name.lower()}")
            # Without input queues an output loads only while empty (a packet every other
            # cycle, as fast as a route expander sends them): its ready then reaches no
            # further than its own register, not through the inputs to the senders and on
            # through the next router, one long path per hop.
            free = ~tx.valid if self.fifo_depth == 0 else ~tx.valid | tx.ready
            m.d.comb += load.eq(free & ~frozen & requests.any())
            grants.append((grant, load))
            with m.If(tx.ready):
                m.d.sync += tx.valid.eq(0)
            with m.If(load):
                m.d.sync += [tx.valid.eq(1),
                             tx.payload.eq(_select(grant, [head for _, head, _, _ in heads]))]
                for i in range(n):
                    with m.If(grant[i]):
                        m.d.sync += priority.eq((i + 1) % n)
        # Each head wants one output at most, so at most one grant pops it. No head is popped
        # by the output of its own port (never granted, see _route): leaving that term out
        # keeps the port's ready free of the same port's output.
        for i, port in enumerate(self.ports):
            m.d.comb += pops[i].eq(Cat(grant[i] & load for o, (grant, load) in enumerate(grants)
                                       if o != i or port == Port.LOCAL).any())
        return m
