"""The tick controller: the chip's tick barrier, in the mesh domain (``sync``).

docs/chip.md ("The tick barrier, and why it holds for any clock ratio") gives the argument;
:class:`TickController` is the count of packets in the mesh and the decision it rests on.
"""

from amaranth.hdl import Cat, Module, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .abi import TICK_BITS
from .core import Handshake
from .counter import Counter

__all__ = ["TickController"]


class TickController(wiring.Component):
    """Counts the packets in the mesh, and starts a tick's update when the barrier holds.

    A packet enters the mesh from the host (``injected``) or from a tile's route expander
    (``expanded``), and leaves it into a tile's ingress queue (``arrived``), to the host's
    output (``to_host``), or dropped by a router (``dropped``). The handshakes are all in the
    mesh domain, so the count of packets in flight is exact without synchronizers.

    The update of tick ``t`` starts (``tick`` completes, and ``send_tick`` asks every tile for a
    TICK marker behind the events already in its ingress queue) when the host has finished
    injecting tick ``t`` (``tick.valid``), every core has reported DONE for the last update
    (``done``), every marker of the last tick has been written (``owed``), and nothing is in
    flight: ``quiet``. Every event of tick ``t`` is then in its core's ingress queue, so the
    marker stands behind exactly those (docs/chip.md).

    Registers: every entering and leaving term is registered before it is added to the count
    (the terms come from the routers' routing decisions, which on a chip without router queues
    follow their senders' registers in the same cycle); ``quiet`` waits for those registers to
    be empty. ``stamp`` is registered too (see :meth:`elaborate`).

    Parameters
    ----------
    tiles : int
        Tiles (cores) of the chip, in chip-bus order.
    routers : int
        Router nodes of the mesh; each drops fewer than 7 packets a cycle.
    places : int
        Every place a packet can wait in on its way through the mesh: in flight is never more.
    dsp_counters : bool
        ``ticks`` in a DSP block on an iCE40 (:class:`~spikefab.hdl.counter.Counter`).

    Members
    -------
    tick : In(Handshake)
        End of the host's injections for the current tick: the transfer completes when the
        tick's update has been started on every core.
    quiet : Out(1)
        No update running, no marker owed, no packet in flight.
    send_tick : Out(1)
        One cycle, as ``tick`` completes: a TICK marker into every ingress queue.
    injected : In(1)
        A host packet entered the mesh this cycle.
    expanded : In(tiles)
        Tile ``k``'s route expander sent a packet into the mesh this cycle.
    to_host : In(1)
        A packet left the mesh to the host's output this cycle.
    dropped : In(range(7 * routers + 1))
        Packets the routers dropped this cycle.
    arrived : In(tiles)
        An event left the mesh into tile ``k``'s ingress queue this cycle.
    done : In(tiles)
        Tile ``k``'s update has finished and all its packets have been sent.
    owed : In(tiles)
        Tile ``k``'s marker is not yet written.
    stamp : Out(TICK_BITS)
        The tick that OUTPUT packets are stamped with.
    ticks, mesh_drops : Out(32)
        Ticks started; packets dropped by the routers.
    """

    def __init__(self, *, tiles: int, routers: int, places: int, dsp_counters: bool = False):
        self.tiles = tiles
        self.routers = routers
        self.places = places
        self.dsp_counters = bool(dsp_counters)
        super().__init__({
            "tick": In(Handshake),
            "quiet": Out(1),
            "send_tick": Out(1),
            "injected": In(1),
            "expanded": In(tiles),
            "to_host": In(1),
            "dropped": In(range(7 * routers + 1)),
            "arrived": In(tiles),
            "done": In(tiles),
            "owed": In(tiles),
            "stamp": Out(TICK_BITS),
            "ticks": Out(32),
            "mesh_drops": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        pending = Signal(self.tiles)  # cores whose update has not reported DONE
        produced = [self.injected, *self.expanded]
        consumed = [self.to_host, self.dropped, *self.arrived]
        in_flight = Signal(range(self.places + 1))
        # Every packet entering or leaving this cycle is first registered, then added: the
        # drops and the host's injections come from the routers' routing decisions, which on
        # a chip without router queues follow their senders' registers in the same cycle.
        # While a registered term is not zero the chip is not quiet. The change is summed in a
        # few bits, then one 16-bit adder (each term added to the count would be one).
        produced_q = [Signal.like(Value.cast(t), name=f"produced_{i}")
                      for i, t in enumerate(produced)]
        consumed_q = [Signal.like(Value.cast(t), name=f"consumed_{i}")
                      for i, t in enumerate(consumed)]
        m.d.sync += [q.eq(t) for q, t in zip(produced_q + consumed_q, produced + consumed)]
        change = Signal(signed(bits_for(len(produced)) + 1 + bits_for(7 * self.routers
                                                                      + len(consumed))))
        m.d.comb += change.eq(sum(produced_q) - sum(consumed_q))
        m.d.sync += in_flight.eq(in_flight + change)
        settled = Signal()
        m.d.comb += settled.eq(~Cat(produced_q + consumed_q).any())
        m.submodules.ticks = ticks = Counter(32, dsp=self.dsp_counters)
        m.submodules.mesh_drops = mesh_drops = Counter(32, step_width=len(self.dropped))
        drops_q = next(q for q, t in zip(consumed_q, consumed) if t is self.dropped)
        m.d.comb += [ticks.step.eq(1), mesh_drops.step.eq(drops_q),
                     mesh_drops.en.eq(1),
                     self.ticks.eq(ticks.value), self.mesh_drops.eq(mesh_drops.value)]
        # The tick that OUTPUT packets are stamped with: the update running is that of the
        # last tick started (``ticks`` counts them; see RouteExpander).
        # Registered: the count comes from a DSP block on the iCE40, and the stamp goes into
        # a packet the router decides on in the same cycle. A tick's first spike comes many
        # cycles after the tick started, so the stamp is always the new one.
        m.d.sync += self.stamp.eq(ticks.value - 1)
        m.d.comb += self.quiet.eq((pending == 0) & (self.owed == 0) & (in_flight == 0)
                                  & settled)
        with m.If(self.tick.valid & self.quiet):
            m.d.comb += [self.tick.ready.eq(1), self.send_tick.eq(1)]
            m.d.sync += pending.eq(~0)
            m.d.comb += ticks.en.eq(1)
        with m.Else():
            m.d.sync += pending.eq(pending & ~self.done)
        return m
