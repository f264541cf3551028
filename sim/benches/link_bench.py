"""cocotb bench: the chip behind its host link, served over a Unix socket (see sim/link_rtl.py).

Messages as ``sim.link_rtl`` defines them (``REQUEST_HEAD``, ``ANSWER_HEAD``, ``END_OF_RUN``).
The bench feeds a request's bytes in chunks, counts the frames in them the way the receiver
does, and answers with the chip's bytes and the mesh cycles once every frame has been
answered.
Clocks run in C++; Python wakes per chunk, not per cycle.
"""

import os
import socket

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Event, FallingEdge, RisingEdge, Timer, with_timeout

from spikefab.firmware.protocol import SlipDecoder
from spikefab.sim.link_rtl import (ANSWER_HEAD, CHUNK, END_OF_RUN, IDLE, IDLE_HEAD,
                                   POWER_ON_RESET, REQUEST_HEAD, REQUEST_TIMEOUT, START_DELAY)


def _recv(conn, n):
    data = bytearray()
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the host closed the connection")
        data += chunk
    return bytes(data)


@cocotb.test()
async def serve(dut):
    clocks = dict(item.split("=") for item in os.environ["SPIKEFAB_LINK_CLOCKS"].split(","))
    for domain, period in clocks.items():
        signal = dut.clk if domain == "sync" else getattr(dut, f"{domain}_clk")
        Clock(signal, int(period), unit="ps", impl="gpi").start()
    period = int(clocks["sync"])
    # A one-clock design resets itself for its first POWER_ON_RESET rising edges
    # (ChunkedPort); with several clocks the bench holds every domain's reset input for those.
    resets = ([dut.rst] if hasattr(dut, "rst") else []) + \
        [getattr(dut, f"{d}_rst") for d in clocks if d != "sync"]
    dut.rx_valid.value = 0
    dut.tx_ready.value = 0
    for rst in resets:
        rst.value = 1
    for _ in range(POWER_ON_RESET):
        await RisingEdge(dut.clk)
    for rst in resets:
        rst.value = 0
    await Timer(period * START_DELAY, unit="ps")

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(os.environ["SPIKEFAB_LINK_SOCKET"])
    requests, responses = SlipDecoder(), SlipDecoder()
    start = cocotb.utils.get_sim_time("ps")
    while True:
        (length,) = REQUEST_HEAD.unpack(_recv(conn, REQUEST_HEAD.size))
        if length == END_OF_RUN:
            break
        if length == IDLE:
            cycles, drops = IDLE_HEAD.unpack(_recv(conn, IDLE_HEAD.size))
            await Timer(cycles * period, unit="ps")
            if drops:   # the link dropped any half frame: so does the bench's count
                requests.discard()
            conn.sendall(ANSWER_HEAD.pack(0, int(cocotb.utils.get_sim_time("ps") - start)
                                          // period))
            continue
        data = _recv(conn, length)
        expected = len(requests.feed(data))
        answer = bytearray()
        done = Event()

        async def collect():
            got = 0
            while got < expected:
                await FallingEdge(dut.clk)
                if not dut.tx_valid.value:
                    await RisingEdge(dut.tx_valid)
                    await FallingEdge(dut.clk)
                n = int(dut.tx_count.value)
                chunk = dut.tx_data.value.to_unsigned().to_bytes(CHUNK, "little")[:n]
                answer.extend(chunk)
                got += len(responses.feed(chunk))
                dut.tx_ready.value = 1
                await RisingEdge(dut.clk)
                dut.tx_ready.value = 0
            done.set()

        collector = cocotb.start_soon(collect())
        for k in range(0, len(data), CHUNK):
            chunk = data[k:k + CHUNK]
            await FallingEdge(dut.clk)
            if not dut.rx_ready.value:
                await RisingEdge(dut.rx_ready)
                await FallingEdge(dut.clk)
            dut.rx_data.value = int.from_bytes(chunk, "little")
            dut.rx_count.value = len(chunk)
            dut.rx_valid.value = 1
            await RisingEdge(dut.clk)
            dut.rx_valid.value = 0
        if expected:
            await with_timeout(done.wait(), REQUEST_TIMEOUT * period, "ps")
        else:
            collector.cancel()
        cycles = int(cocotb.utils.get_sim_time("ps") - start) // period
        conn.sendall(ANSWER_HEAD.pack(len(answer), cycles) + bytes(answer))
    conn.close()
