"""Bounded proofs (yowasp-sby + Yices) of the router node.

For one packet value the solver picks freely (``tracked``), entering at most once on any input,
with free traffic and free backpressure on every port: the tracked packet never leaves more
often than it entered (no duplication, no invention); it leaves only by the port XY routing
dictates; a packet the router must drop never leaves; the router never drops more packets than
it was given undeliverable ones (so never a deliverable one); every output obeys the stream
rules (a stalled ``valid`` stays up with its payload unchanged), given that every input does.

The proofs are bounded at the depths below, which take seconds; at one cycle more the solver
takes minutes (measured: past 5 minutes at depth 7 on the 6-port node). A bounded liveness
property (every deliverable packet leaves within some bound) would need a depth of about 18,
out of reach for now; loss and starvation are covered by the simulation tests
(tests/test_router.py) instead.
"""

import pytest
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Cat, Module, Mux, ResetSignal, Signal, unsigned
from amaranth.lib import data, wiring

from spikefab.hdl.abi import PacketKind
from spikefab.hdl.router import Port, RouterNode
from spikefab.sim.formal import free_stream_in, prove
from spikefab.sim.runner import build_dir_root

AXONS = [[4, 8, 2], [1, 8, 3], [5, 0, 6]]
#: PROOF_PACKET's fields, narrowed so that the proofs take seconds: the router's logic is the same.
PROOF_PACKET = data.StructLayout({
    "kind": unsigned(1), "x": unsigned(2), "y": unsigned(2),
    "body": data.UnionLayout({"event": data.StructLayout({"axon": unsigned(3)}),
                              "output": data.StructLayout({"neuron": unsigned(3)})}),
})


class RouterProperties(wiring.Component):
    """The router under free stimulus, with the properties above; no ports of its own."""

    def __init__(self, node: RouterNode):
        self.node = node
        super().__init__({})

    def _expected_port(self, m, packet, arrived):
        """XY routing written independently of the router: the one-hot port, or 0 to drop
        (also for a packet that would go back by ``arrived``, None for the tracked packet,
        which may enter anywhere: its ``deliverable`` is then checked per port)."""
        node = self.node
        x, y = node.position
        cols, rows = node.mesh
        expected = Signal(len(node.ports))
        is_output = packet.kind == PacketKind.OUTPUT
        host_x, host_y = node.host_tile or (0, 0)
        tx = Mux(is_output, host_x, packet.x)
        ty = Mux(is_output, host_y, packet.y)
        in_mesh = Signal()
        for yy in range(rows):
            for xx in range(cols):
                with m.If((packet.x == xx) & (packet.y == yy) &
                          (packet.body.event.axon < AXONS[yy][xx])):
                    m.d.comb += in_mesh.eq(1)
        deliverable = Signal()
        m.d.comb += deliverable.eq(Mux(is_output, node.host_tile is not None, in_mesh))
        index = {p: k for k, p in enumerate(node.ports)}
        routed = Signal(len(node.ports))
        with m.If(deliverable):
            with m.If(tx > x):
                m.d.comb += routed.eq(1 << index[Port.EAST])
            with m.Elif(tx < x):
                m.d.comb += routed.eq(1 << index[Port.WEST])
            with m.Elif(ty > y):
                m.d.comb += routed.eq(1 << index[Port.SOUTH])
            with m.Elif(ty < y):
                m.d.comb += routed.eq(1 << index[Port.NORTH])
            with m.Elif(is_output):
                if Port.HOST in index:
                    m.d.comb += routed.eq(1 << index[Port.HOST])
            with m.Else():
                m.d.comb += routed.eq(1 << index[Port.LOCAL])
        m.d.comb += expected.eq(routed)
        if arrived is not None and arrived != Port.LOCAL:
            back = routed == (1 << index[arrived])
            return expected, deliverable & ~back
        return expected, deliverable

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = node = self.node
        m.d.comb += Assume(~ResetSignal())

        tracked = Signal(PROOF_PACKET)
        m.d.comb += tracked.as_value().eq(AnyConst(PROOF_PACKET.size))
        expected, deliverable = self._expected_port(m, tracked, None)

        entered = Signal()
        left = Signal(2)
        in_hits = []
        # Never drops a deliverable packet: drops so far <= undeliverable packets taken so far.
        undeliverable_in = Signal(8)
        dropped = Signal(8)
        bad_now = []
        for port in node.ports:
            rx, tx = node.port(port).rx, node.port(port).tx
            _, ok = self._expected_port(m, rx.payload, port)
            bad_now.append(rx.valid & rx.ready & ~ok)
            free_stream_in(m, rx, f"{port.name.lower()}_rx")
            hit = rx.valid & rx.ready & (rx.payload.as_value() == tracked.as_value())
            in_hits.append(hit)
            # Free backpressure on the outputs; they must keep the stream rules.
            m.d.comb += tx.ready.eq(AnySeq(1))
            out_stalled = Signal(name=f"{port.name.lower()}_tx_stalled")
            out_held = Signal(PROOF_PACKET, name=f"{port.name.lower()}_tx_held")
            m.d.sync += [out_stalled.eq(tx.valid & ~tx.ready), out_held.eq(tx.payload)]
            with m.If(out_stalled):
                m.d.comb += Assert(tx.valid & (tx.payload.as_value() == out_held.as_value()))
            out_hit = tx.valid & tx.ready & (tx.payload.as_value() == tracked.as_value())
            with m.If(out_hit):
                m.d.comb += Assert(expected == (1 << node.ports.index(port)))
            with m.If(out_hit & ~left[1]):
                m.d.sync += left.eq(left + 1)
        # The tracked value enters at most once, on one port.
        any_hit = Signal()
        m.d.comb += any_hit.eq(Cat(in_hits).any())
        m.d.comb += Assume(sum(in_hits) <= 1)
        with m.If(entered):
            m.d.comb += Assume(~any_hit)
        with m.If(any_hit):
            m.d.sync += entered.eq(1)

        m.d.sync += [undeliverable_in.eq(undeliverable_in + sum(bad_now)),
                     dropped.eq(dropped + node.dropped)]
        m.d.comb += Assert(dropped <= undeliverable_in)
        m.d.comb += Assert(left <= entered)
        with m.If(~deliverable):
            m.d.comb += Assert(left == 0)
        return m


@pytest.mark.parametrize("position, host, depth, fifo_depth", [
    ((1, 1), (1, 1), 6, 2), ((0, 2), None, 7, 2), ((1, 1), (1, 1), 6, 0)],
    ids=["center-with-host", "corner-no-host", "center-with-host-no-queues"])
def test_router_node_safety(position, host, depth, fifo_depth):
    node = RouterNode(x=position[0], y=position[1], cols=3, rows=3, axons=AXONS, host=host,
                      fifo_depth=fifo_depth, layout=PROOF_PACKET)
    label = f"router-{position[0]}{position[1]}-q{fifo_depth}-safety"
    result = prove(RouterProperties(node),
                   build_dir_root() / "formal" / label, depth=depth)
    assert result.passed, f"{label}: see {result.directory}/sby.log\n{result.log[-3000:]}"
