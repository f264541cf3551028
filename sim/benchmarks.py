"""The figures in BENCHMARKS.md, measured: ``spikefab bench`` prints them as Markdown tables."""

from __future__ import annotations

import math
import platform
import time

import numpy as np

from .core_rtl import core_build, simulate_core
from .encoding import encode, rate_encode
from .golden import CoreModel, NeuronConfig
from ..hdl.abi import CoreShape, ResetMode
from .scenario import CoreScenario

__all__ = ["event_cost", "golden_throughput", "mnist_figures", "mnist_table", "router_throughput", "router_latency", "chip_figures",
           "link_figures", "noisy_line_figures", "golden_vs_snntorch", "snntorch_table",
           "transport_figures", "transport_table", "SCALE_WORKERS", "scale_figures",
           "scale_table", "run_benchmarks"]

EVENT_COUNTS = (0, 1, 2, 4, 8, 16, 32, 64)


def _cost_scenario(shape: CoreShape, ticks: int, seed: int) -> CoreScenario:
    rng = np.random.default_rng(seed)
    counts = [EVENT_COUNTS[t % len(EVENT_COUNTS)] for t in range(ticks)]
    return CoreScenario(
        shape=shape, config=NeuronConfig(threshold=2000, leak=2, reset=ResetMode.SUBTRACT),
        weights=rng.integers(-20, 40, size=(shape.axons, shape.neurons)),
        bias=np.zeros(shape.neurons, np.int64), v0=np.zeros(shape.neurons, np.int64),
        events=[rng.integers(0, shape.axons, size=min(c, shape.events_per_tick))
                for c in counts],
        name=f"cost-seed{seed}", seed=seed)


def event_cost(shape: CoreShape, lanes: int, *, ticks: int = 64, seed: int = 7) -> dict:
    """Cycles per event (slope of tick cycles over events), cycles per update, sim speed."""
    core_build(shape, lanes=lanes).build()
    scenario = _cost_scenario(shape, ticks, seed)
    trace, = simulate_core(shape, [scenario], lanes=lanes, run_name=f"bench-cost-{seed}")
    events = np.array([len(e) for e in scenario.events])
    total = trace.cycles.sum(axis=1)
    slope, intercept = np.polyfit(events, total, 1)
    return {
        "shape": shape, "lanes": lanes, "bound": math.ceil(shape.neurons / lanes),
        "cycles_per_event": float(slope),
        "cycles_per_update": float(np.median(trace.cycles[events == 0, 1])),
        "sim_cycles_per_second": trace.sim_cycles / trace.sim_seconds,
    }


def golden_throughput(batch: int, *, steps: int = 25, repeats: int = 3, seed: int = 0) -> dict:
    """Neuron updates per second of the golden model for a 784-input, 128-neuron core."""
    shape = CoreShape(axons=784, neurons=128, w_bits=8)
    rng = np.random.default_rng(seed)
    weights = rng.integers(-128, 128, size=(784, 128))
    images = rng.integers(0, 256, size=(batch, 784), dtype=np.uint8)
    t0 = time.perf_counter()
    spikes = rate_encode(images, steps, seed)
    encode_seconds = time.perf_counter() - t0
    best = math.inf
    for _ in range(repeats):
        model = CoreModel(shape, weights, NeuronConfig(500, 4), batch=batch)
        t0 = time.perf_counter()
        model.run(spikes)
        best = min(best, time.perf_counter() - t0)
    return {"batch": batch, "steps": steps,
            "neuron_updates_per_second": batch * steps * 128 / best,
            "images_per_second": batch / best,
            "encode_images_per_second": batch / encode_seconds}


def _golden_vs_snntorch_here(steps: int = 25, repeats: int = 3, seed: int = 0) -> dict:
    """Both measurements, in this process (see :func:`golden_vs_snntorch`)."""
    import torch
    import snntorch
    from .golden_chip import GoldenChip
    from ..firmware.mnist import bundled_slice
    from ..firmware.run import load_network
    from ..hdl.profiles import get_profile
    torch.set_num_threads(1)
    data = bundled_slice()
    image, _ = load_network("mnist-accurate", profile="icebreaker", seed=seed)
    spikes = encode(data.images, steps, seed, data.indices, encoder=image.encoder)
    count = spikes.shape[1]
    golden = GoldenChip(get_profile("icebreaker").info())
    golden.load(image)
    golden_best = min(golden.run(spikes, outputs=False).seconds for _ in range(repeats))
    # snnTorch's float inference of a 784-128-10 network of Leaky neurons, the same T and the
    # same spikes; random weights (only the speed is compared).
    torch.manual_seed(seed)
    fc1, fc2 = torch.nn.Linear(784, 128), torch.nn.Linear(128, 10)
    lif1, lif2 = snntorch.Leaky(beta=0.9375), snntorch.Leaky(beta=0.9375)
    x = torch.from_numpy(spikes.astype(np.float32))

    def forward(x):
        mem1, mem2 = lif1.init_leaky(), lif2.init_leaky()
        counts = torch.zeros(x.shape[1], 10)
        for t in range(x.shape[0]):
            spk1, mem1 = lif1(fc1(x[t]), mem1)
            spk2, mem2 = lif2(fc2(spk1), mem2)
            counts += spk2
        return counts

    torch_best = math.inf
    with torch.inference_mode():
        for _ in range(repeats):
            t0 = time.perf_counter()
            forward(x)
            torch_best = min(torch_best, time.perf_counter() - t0)
    return {"images": count, "steps": steps, "golden_images_per_s": count / golden_best,
            "snntorch_images_per_s": count / torch_best,
            "ratio": torch_best / golden_best, "torch_threads": torch.get_num_threads(),
            "snntorch": snntorch.__version__, "torch": torch.__version__}


def golden_vs_snntorch(*, steps: int = 25) -> dict | str:
    """Images/s of the golden chip model (``mnist-accurate``, 784-128-10, on the icebreaker
    profile; 1000 bundled images in one batch, best of 3, encoding not timed) and of snnTorch's
    float inference of a 784-128-10 network on the same spikes, measured one after the other
    in one subprocess whose BLAS and torch use one thread each. Returns a message instead when
    snnTorch is not installed."""
    import importlib.util
    import json
    import os
    import subprocess
    import sys
    if importlib.util.find_spec("snntorch") is None or importlib.util.find_spec("torch") is None:
        return ("snnTorch is not installed: `pip install -e '.[bench]'` (snntorch and torch) "
                "to measure the golden model against it")
    # The thread counts must be fixed before NumPy's BLAS starts, hence a fresh process.
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", OPENBLAS_DEFAULT_NUM_THREADS="1")
    code = ("import json; from spikefab.sim.benchmarks import _golden_vs_snntorch_here; "
            f"print(json.dumps(_golden_vs_snntorch_here({steps})))")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def snntorch_table(r: dict | str) -> str:
    if isinstance(r, str):
        return f"golden model vs snnTorch: skipped ({r})"
    return "\n".join([
        "| 784-128-10, T = 25, one thread each, same run | images/s |", "|---|---|",
        f"| golden chip model (`mnist-accurate`, batch {r['images']}) | "
        f"{r['golden_images_per_s']:,.0f} |",
        f"| snnTorch {r['snntorch']} float (torch {r['torch']}, Leaky, batch {r['images']}) | "
        f"{r['snntorch_images_per_s']:,.0f} |",
        f"| golden / snnTorch | {r['ratio']:.2f}x |"])


#: The runs of :func:`scale_figures`: ``--workers`` values, each with every shipped model.
SCALE_WORKERS = (1, 2, "ray")


def scale_figures(data: str, *, split: str = "test", first: int = 0, count: int | None = None,
                  models=("mnist-fast", "mnist-accurate"), workers=SCALE_WORKERS,
                  progress=None) -> list[dict]:
    """``spikefab verify`` of ``count`` images (default: all from ``first`` on) of ``data``
    for each model and each ``--workers`` value (``"ray"``: a Ray cluster started on this
    machine, one worker per core): the wall time, images/s and the number of images where the
    RTL differed from golden."""
    from ..firmware.verify import verify_mnist
    rows = []
    for model in models:
        for w in workers:
            if progress:
                progress(f"spikefab verify --model {model} --workers {w} over {data} ...")
            r = verify_mnist(model=model, data=data, split=split, first=first, count=count,
                             workers=w, progress=False)
            rows.append({key: r[key] for key in (
                "model", "data", "first", "images", "steps", "workers", "seconds",
                "images_per_second", "accuracy")} | {"mismatches": len(r["mismatches"])})
    return rows


def scale_table(rows: list[dict]) -> str:
    lines = ["| `spikefab verify` (RTL `sim` vs golden) | model (T) | images | --workers | "
             "wall time | images/s | RTL != golden | accuracy |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data']} from {r['first']} | {r['model']} ({r['steps']}) | "
                     f"{r['images']:,} | {r['workers']} | {r['seconds']:,.0f} s | "
                     f"{r['images_per_second']:,.1f} | {r['mismatches']} | "
                     f"{r['accuracy']:.2%} |")
    return "\n".join(lines)


def run_benchmarks(*, quick: bool = False, progress=None, data: str | None = None,
                   split: str = "test", first: int = 0, count: int | None = None) -> str:
    """BENCHMARKS.md's tables; ``progress``, if given, is called with a line of text as each
    measurement starts. With ``data`` (an MNIST folder) also :func:`scale_figures` on its
    ``split`` (``count`` images from ``first``; default: all)."""
    start = time.perf_counter()

    def say(text: str) -> None:
        if progress:
            progress(f"{text} ({time.perf_counter() - start:.0f} s so far)")

    lines = [f"machine: {platform.machine()}, {platform.python_implementation()} "
             f"{platform.python_version()}, numpy {np.__version__}", ""]
    configs = [(CoreShape(1024, 128, w_bits=8), 8), (CoreShape(256, 256, w_bits=4), 16),
               (CoreShape(100, 37, w_bits=4), 4), (CoreShape(64, 32, w_bits=8), 8),
               (CoreShape(24, 5, w_bits=8), 1)]
    if quick:
        configs = configs[-2:]
    lines += ["| core (A x N, w_bits, P) | ceil(N/P) | cycles/event | over bound | "
              "cycles/update | RTL sim cycles/s |", "|---|---|---|---|---|---|"]
    for shape, lanes in configs:
        say(f"event cost of a {shape.axons} x {shape.neurons} core, {lanes} lanes (RTL "
            f"simulation; the first time, its build) ...")
        r = event_cost(shape, lanes, ticks=32 if quick else 64)
        lines.append(f"| {shape.axons} x {shape.neurons}, {shape.w_bits}, {lanes} | "
                     f"{r['bound']} | {r['cycles_per_event']:.2f} | "
                     f"{r['cycles_per_event'] - r['bound']:+.2f} | "
                     f"{r['cycles_per_update']:.0f} | {r['sim_cycles_per_second']:,.0f} |")
    lines += ["", "| golden model, 784 x 128, T = 25 | neuron updates/s | images/s | "
              "encoder images/s |", "|---|---|---|---|"]
    for batch in ((1, 100) if quick else (1, 100, 1000)):
        say(f"golden model throughput, batch {batch} ...")
        r = golden_throughput(batch)
        lines.append(f"| batch {batch} | {r['neuron_updates_per_second']:,.0f} | "
                     f"{r['images_per_second']:,.0f} | {r['encode_images_per_second']:,.0f} |")
    say("golden model against snnTorch's float inference, one thread each ...")
    lines += ["", snntorch_table(golden_vs_snntorch())]
    lines += ["", "| router node (6 ports, all inputs offering, outputs ready) | input queue "
              "| packets/cycle | per port | busiest output |", "|---|---|---|---|---|"]
    for traffic in ("uniform", "hot-spot"):
        for depth in (2, 3):
            say(f"router node throughput, {traffic} traffic, queues of {depth} "
                f"(Amaranth simulation) ...")
            r = router_throughput(traffic, cycles=500 if quick else 2000, fifo_depth=depth)
            lines.append(f"| {traffic} | {depth} | {r['packets_per_cycle']:.2f} | "
                         f"{r['per_port']:.2f} | {r['busiest_output']:.2f} |")
    say("router latency per hop ...")
    lines.append(f"\nrouter latency per hop, no contention: {router_latency()} cycles")
    if not quick:
        say("a 2 x 2 chip in RTL simulation (the first time, its build) ...")
        r = chip_figures()
        lines += ["", "| 2 x 2 chip, RTL simulation, all clocks equal | value |", "|---|---|",
                  f"| mesh cycles per empty tick (barrier overhead) | "
                  f"{r['cycles_per_empty_tick']:.1f} |",
                  f"| mesh cycles per tick, recurrent network | "
                  f"{r['recurrent_cycles_per_tick']:.1f} |",
                  f"| synaptic ops per mesh cycle | {r['sops_per_mesh_cycle']:.2f} |",
                  f"| synaptic ops per second of simulation | {r['sops_per_second']:,.0f} |"]
    say("MNIST over the host link: wire bytes, the golden model and the RTL simulation of the "
        "icebreaker chip (the first time, its build: minutes) ...")
    lines += ["", link_table(link_figures(images=5 if quick else 20,
                                          sim_images=1 if quick else 3))]
    say("wire bytes of networks whose first layer spans several cores (link model) ...")
    lines += ["", mapped_wire_table(mapped_wire_figures(images=5))]
    rows = []
    for model in ("mnist-accurate", "mnist-fast"):
        say(f"shipped model {model}: the bundled slice on the golden model, then the RTL "
            f"simulation ...")
        rows.append(mnist_figures(model, sim_images=2 if quick else 10))
    lines += ["", mnist_table(rows)]
    say("the RTL transports side by side: the cocotb bench and the C++ harness, the same "
        "images of each shipped model (the first time, the harness's build) ...")
    lines += ["", transport_table([transport_figures(model, images=5 if quick else 50)
                                   for model in ("mnist-accurate", "mnist-fast")])]
    if data is None:
        lines += ["", "whole data sets through the RTL: skipped (give spikefab bench --data "
                  "DIR, an MNIST folder)"]
    else:
        lines += ["", scale_table(scale_figures(data, split=split, first=first, count=count,
                                                progress=say))]
    return "\n".join(lines)


def transport_figures(model: str, *, images: int = 50, seed: int = 0) -> dict:
    """The ``cocotb`` and ``sim`` transports (sim/link_rtl.py: SimTransport, sim/link_fast.py:
    FastTransport) on the ``icebreaker`` chip, one after the other on the same first
    ``images`` of the bundled slice: simulated mesh cycles per second and images per second
    of ``LinkChip.run`` (builds, start-up and loading the image not counted), and whether
    the two runs are equal (predictions, output counts and events, final membranes, synaptic
    ops, the chip's cycles)."""
    from ..firmware.driver import Link, LinkChip
    from ..firmware.mnist import bundled_slice
    from ..firmware.run import load_network
    from ..hdl.profiles import get_profile
    from .link_fast import FastTransport
    from .link_rtl import SimTransport
    profile = get_profile("icebreaker")
    image, steps = load_network(model, profile="icebreaker", seed=seed)
    data = bundled_slice()
    spikes = encode(data.images[:images], steps, seed, data.indices[:images],
                    encoder=image.encoder)
    figures, results = {"model": model, "steps": steps, "images": images}, {}
    for name, transport_class in (("cocotb", SimTransport), ("sim", FastTransport)):
        with transport_class(profile) as transport:
            chip = LinkChip(Link(transport), target=name)
            chip.load(image)
            start_cycles, start = transport.link.cycles, time.perf_counter()
            results[name] = chip.run(spikes)
            seconds = time.perf_counter() - start
            cycles = transport.link.cycles - start_cycles
        figures[name] = {"seconds": seconds, "cycles": cycles,
                         "cycles_per_second": cycles / seconds,
                         "images_per_second": images / seconds}
    a, b = results["cocotb"], results["sim"]
    figures["equal"] = bool(
        np.array_equal(a.predictions, b.predictions) and np.array_equal(a.counts, b.counts)
        and np.array_equal(a.final_v, b.final_v) and a.sops == b.sops and a.cycles == b.cycles
        and all(sorted(x) == sorted(y) for x, y in zip(a.outputs, b.outputs)))
    figures["cycles_per_image"] = b.cycles / images
    figures["speedup"] = (figures["sim"]["cycles_per_second"]
                          / figures["cocotb"]["cycles_per_second"])
    return figures


def transport_table(rows: list[dict]) -> str:
    lines = ["| RTL transport (icebreaker chip, one clock) | model (T) | images | "
             "cycles/image | simulated cycles/s | images/s | equal |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        for name, how in (("cocotb", "`cocotb`: cocotb bench, Python per chunk"),
                          ("sim", "`sim`: C++ harness, no Python per cycle")):
            f = r[name]
            lines.append(f"| {how} | {r['model']} ({r['steps']}) | {r['images']} | "
                         f"{r['cycles_per_image']:,.0f} | {f['cycles_per_second']:,.0f} | "
                         f"{f['images_per_second']:.1f} | {r['equal']} |")
        lines.append(f"| speed-up | {r['model']} ({r['steps']}) | | | "
                     f"{r['speedup']:.1f}x | | |")
    return "\n".join(lines)


def mnist_figures(model: str, *, sim_images: int = 10, repeats: int = 3, seed: int = 0) -> dict:
    """A shipped model on the bundled slice (1000 images never trained on): hardware-exact
    accuracy, golden-model images/s (batched; best of ``repeats``), synaptic ops per image, and
    the first ``sim_images`` through the RTL simulation: cycles per image and whether every
    output event, final membrane and synaptic-op count equals the golden model's."""
    from ..firmware.driver import Link, LinkChip
    from .golden_chip import GoldenChip
    from .link_rtl import SimTransport
    from ..firmware.mnist import bundled_slice
    from ..hdl.profiles import get_profile
    from ..firmware.run import load_network
    profile = get_profile("icebreaker")
    image, steps = load_network(model, profile="icebreaker", seed=seed)
    data = bundled_slice()
    t0 = time.perf_counter()
    spikes = encode(data.images, steps, seed, data.indices, encoder=image.encoder)
    encode_seconds = time.perf_counter() - t0
    golden = GoldenChip(profile.info())
    golden.load(image)
    runs = [golden.run(spikes, outputs=False) for _ in range(repeats)]
    best = min(r.seconds for r in runs)
    g = golden.run(spikes[:, :sim_images])
    with SimTransport(profile) as transport:
        sim = LinkChip(Link(transport), target="sim")
        sim.load(image)
        r = sim.run(spikes[:, :sim_images])
    same = (r.sops == g.sops and np.array_equal(r.final_v, g.final_v)
            and all(sorted(a) == sorted(b) for a, b in zip(r.outputs, g.outputs)))
    count = len(data.labels)
    return {
        "model": model, "steps": steps,
        "accuracy": float((runs[0].predictions == data.labels).mean()), "images": count,
        "golden_images_per_s": count / best,
        "golden_images_per_s_with_encoding": count / (best + encode_seconds),
        "sops_per_image": runs[0].sops / count,
        "sim_images": sim_images, "cycles_per_image": r.cycles / sim_images,
        "sim_images_per_s": sim_images / r.seconds, "sim_equals_golden": same,
    }


def mnist_table(rows: list[dict]) -> str:
    lines = ["| shipped model (icebreaker profile) | T | bundled-slice accuracy | golden images/s "
             "| with encoding | synaptic ops/image | RTL cycles/image | RTL == golden |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['steps']} | {r['accuracy']:.2%} ({r['images']}) | "
                     f"{r['golden_images_per_s']:,.0f} | "
                     f"{r['golden_images_per_s_with_encoding']:,.0f} | "
                     f"{r['sops_per_image']:,.0f} | {r['cycles_per_image']:,.0f} | "
                     f"{r['sim_equals_golden']} ({r['sim_images']} images) |")
    return "\n".join(lines)


def link_table(r: dict) -> str:
    return "\n".join([
        "| MNIST over the host link (icebreaker, random 784-128-10, T = 25) | value |",
        "|---|---|",
        f"| input events per image | {r['events_per_image']:,.0f} |",
        f"| wire bytes per image, host -> chip | {r['sent_per_image']:,.0f} |",
        f"| wire bytes per image, chip -> host | {r['received_per_image']:,.0f} |",
        f"| link efficiency (event bytes / all wire bytes) | {r['efficiency']:.1%} |",
        f"| UART time per image at 3 Mbaud (8N1) | {r['uart_ms_3mbaud']:.1f} ms |",
        f"| golden images/s (batched, 1000 images) | {r['golden_images_per_s']:,.0f} |",
        f"| RTL simulation images/s (driver -> host link) | {r['sim_images_per_s']:.2f} |",
        f"| mesh cycles per image (RTL, link traffic included) | {r['cycles_per_image']:,.0f} |",
        f"| synaptic ops per image | {r['sops_per_image']:,.0f} |",
        f"| sim predictions == golden predictions | {r['sim_equals_golden']} |",
    ])


def router_throughput(traffic: str, *, cycles: int = 2000, seed: int = 1,
                      fifo_depth: int = 2) -> dict:
    """Packets per cycle through the 6-port centre node of a 3 x 3 mesh (Amaranth simulator)
    with input queues of ``fifo_depth``: every input always offers a packet, every output is
    always ready. ``uniform``: each packet
    goes to a random tile (or the host); ``hot-spot``: every packet goes to the local core."""
    from amaranth.sim import Simulator
    from ..hdl.abi import pack_event, pack_output
    from ..hdl.router import RouterNode
    node = RouterNode(x=1, y=1, cols=3, rows=3, axons=[[16] * 3] * 3, host=(1, 1),
                      fifo_depth=fifo_depth)
    rng = np.random.default_rng(seed)
    delivered = {port: 0 for port in node.ports}

    def packet():
        if traffic == "hot-spot":
            return pack_event(1, 1, int(rng.integers(0, 16)))
        if rng.random() < 1 / 10:
            return pack_output(0, 0, 0, 0)
        return pack_event(int(rng.integers(0, 3)), int(rng.integers(0, 3)),
                          int(rng.integers(0, 16)))

    async def testbench(ctx):
        for port in node.ports:
            ctx.set(node.port(port).tx.ready, 1)
            ctx.set(node.port(port).rx.valid, 1)
            ctx.set(node.port(port).rx.payload.as_value(), packet())
        for _ in range(cycles):
            samples = await ctx.tick().sample(*[node.port(p).rx.ready for p in node.ports],
                                              *[node.port(p).tx.valid for p in node.ports])
            accepted, sent = samples[2:2 + len(node.ports)], samples[2 + len(node.ports):]
            for port, a, s in zip(node.ports, accepted, sent):
                delivered[port] += s
                if a:
                    ctx.set(node.port(port).rx.payload.as_value(), packet())

    sim = Simulator(node)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    total = sum(delivered.values())
    return {"traffic": traffic, "packets_per_cycle": total / cycles,
            "per_port": total / cycles / len(node.ports),
            "busiest_output": max(delivered.values()) / cycles}


def router_latency() -> int:
    """Cycles from a packet's input handshake to its output ``valid``, with no contention."""
    from amaranth.sim import Simulator
    from ..hdl.abi import pack_event
    from ..hdl.router import RouterNode
    node = RouterNode(x=0, y=0, cols=2, rows=1, axons=[[16, 16]])
    result = {}

    async def testbench(ctx):
        ctx.set(node.east.tx.ready, 1)
        ctx.set(node.west.rx.payload.as_value(), pack_event(1, 0, 3))
        ctx.set(node.west.rx.valid, 1)
        await ctx.tick().until(node.west.rx.ready)
        ctx.set(node.west.rx.valid, 0)
        count = 0
        while not ctx.get(node.east.tx.valid):
            await ctx.tick()
            count += 1
        result["cycles"] = count

    sim = Simulator(node)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return result["cycles"]


def chip_figures(*, ticks: int = 60, seed: int = 3) -> dict:
    """A 2 x 2 chip in RTL simulation, all clocks equal: cycles per empty tick (the barrier's
    overhead) and, for a recurrent network, synaptic operations per second of simulation."""
    from .chip import ChipProgram, CoreProgram
    from .chip_rtl import (ChipScenario, random_chip_layout, random_chip_program,
                           random_host_events, simulate_chip)
    layout = random_chip_layout(2, 2, seed)
    silent = ChipProgram(2, 2, {t: CoreProgram(layout.shape(t), NeuronConfig(100),
                                               np.zeros((layout.sizes[t][0], layout.sizes[t][1]),
                                                        np.int64))
                                for t in layout.sizes}, host=layout.host)
    busy = random_chip_program(layout, seed, topology="recurrent")
    scenarios = [
        ChipScenario(layout=layout, program=silent, host_events=[[] for _ in range(ticks)],
                     name="empty"),
        ChipScenario(layout=layout, program=busy,
                     host_events=random_host_events(busy, ticks, seed), name="recurrent"),
    ]
    empty, recurrent = simulate_chip(scenarios, run_name=f"bench-chip-{seed}")
    sops = sum(c["sops"] for c in recurrent.counters.values())
    return {"cycles_per_empty_tick": empty.cycles / ticks,
            "recurrent_cycles_per_tick": recurrent.cycles / ticks,
            "recurrent_sops": sops,
            "sops_per_second": sops / recurrent.seconds,
            "sops_per_mesh_cycle": sops / recurrent.cycles}


def mapped_wire_figures(*, images: int = 5, steps: int = 25, seed: int = 0) -> list[dict]:
    """Wire bytes per image for random 784-H-10 networks on the chips ``spikefab run`` picks
    (``icebreaker`` where they fit, else a generated chip), whose driver repeats each input
    event once per core of layer 0 (docs/mapping.md)."""
    from ..firmware.compiler import compile_for
    from ..firmware.driver import Link, LinkChip
    from ..firmware.mnist import bundled_slice
    from ..firmware.model import random_model
    from .link_model import ModelTransport
    data = bundled_slice()
    spikes = rate_encode(data.images[:images], steps, seed, data.indices[:images])
    rows = []
    for hidden in (128, 256, 1000):
        image = compile_for(random_model([784, hidden, 10], seed=1))
        wire = _CountingTransport(ModelTransport(image.info))
        chip = LinkChip(Link(wire), target="model")
        chip.load(image)
        wire.sent = wire.received = 0
        chip.run(spikes)
        rows.append({"network": f"784-{hidden}-10", "chip": image.profile,
                     "mesh": f"{image.info.cols} x {image.info.rows}",
                     "input_cores": len(image.input_tiles), "sent_per_image": wire.sent / images,
                     "received_per_image": wire.received / images})
    return rows


def mapped_wire_table(rows: list[dict]) -> str:
    lines = ["| network (random, T = 25) | chip | mesh | cores of layer 0 | bytes to the chip "
             "per image | bytes back |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['network']} | `{r['chip']}` | {r['mesh']} | {r['input_cores']} | "
                     f"{r['sent_per_image']:,.0f} | {r['received_per_image']:,.0f} |")
    return "\n".join(lines)


class _CountingTransport:
    """Counts the bytes a transport carries each way."""

    def __init__(self, inner):
        self.inner, self.sent, self.received = inner, 0, 0
        self.window = inner.window

    def exchange(self, data: bytes) -> bytes:
        answer = self.inner.exchange(data)
        self.sent += len(data)
        self.received += len(answer)
        return answer

    def close(self):
        self.inner.close()


def link_figures(*, images: int = 20, sim_images: int = 3, steps: int = 25, seed: int = 0) -> dict:
    """The MNIST run over the host link: wire bytes per image (the same bytes a board gets),
    link efficiency, images/s through golden (batched) and the RTL simulation, cycles/image.

    Network: the seeded random 784-128-10 network of ``spikefab run --model random`` on the
    ``icebreaker`` profile, images from the bundled slice.
    """
    from ..firmware.driver import Link, LinkChip
    from .golden_chip import GoldenChip
    from .link_model import ModelTransport
    from .link_rtl import SimTransport
    from ..firmware.mnist import bundled_slice
    from ..hdl.profiles import get_profile
    from ..firmware.run import load_network
    profile = get_profile("icebreaker")
    image, _ = load_network("random", profile="icebreaker", seed=seed)
    data = bundled_slice()
    spikes = rate_encode(data.images[:1000], steps, seed, data.indices[:1000])
    wire = _CountingTransport(ModelTransport(profile.info()))
    chip = LinkChip(Link(wire), target="model")
    chip.load(image)
    wire.sent = wire.received = 0
    chip.run(spikes[:, :images])
    events = int(spikes[:, :images].sum())
    golden = GoldenChip(profile.info())
    golden.load(image)
    g = golden.run(spikes, outputs=False)
    with SimTransport(profile) as sim_transport:
        sim = LinkChip(Link(sim_transport), target="sim")
        sim.load(image)
        r = sim.run(spikes[:, :sim_images])
    same = bool(np.array_equal(r.predictions, g.predictions[:sim_images]))
    per_image = (wire.sent + wire.received) / images
    return {
        "events_per_image": events / images,
        "sent_per_image": wire.sent / images, "received_per_image": wire.received / images,
        "bytes_per_image": per_image,
        "efficiency": 2 * events / (wire.sent + wire.received),
        "uart_ms_3mbaud": per_image * 10 / 3e6 * 1e3,
        "golden_images_per_s": 1000 / g.seconds,
        "sim_images_per_s": sim_images / r.seconds,
        "cycles_per_image": r.cycles / sim_images,
        "sops_per_image": r.sops / sim_images,
        "sim_equals_golden": same,
    }


def noisy_line_figures(model: str = "mnist-fast", *, rate: float = 0.01, images: int = 20,
                       timeout: float = 0.1, fault_seed: int = 1, seed: int = 0) -> dict:
    """``images`` of the bundled slice through the board stand-in behind a line that damages
    ``rate`` of the bytes (sim/standin.py), with the driver's serial transport, against the
    golden model run directly: whether every answer is the same, and what the link needed
    (seconds, requests, retries, splits) to load the image and to run."""
    from ..firmware.driver import Link, LinkChip, SerialTransport
    from ..firmware.mnist import bundled_slice
    from ..firmware.run import load_network
    from .golden_chip import GoldenChip
    from .standin import BoardStandIn, LineFaults
    image, steps = load_network(model, profile=None, seed=seed)
    data = bundled_slice()
    spikes = encode(data.images[:images], steps, seed, data.indices[:images],
                    encoder=image.encoder)
    info = image.chip_profile().info()
    golden = GoldenChip(info)
    golden.load(image)
    want = golden.run(spikes)
    with BoardStandIn(info, faults=LineFaults(rate=rate, seed=fault_seed)) as board:
        start = time.perf_counter()
        link = Link(SerialTransport(board.path, timeout=timeout))
        chip = LinkChip(link, target="serial")
        chip.load(image)
        loaded, load_link = time.perf_counter(), link.counters.as_dict()
        got = chip.run(spikes)
        chip.close()
        faults = board.faults_applied()
    return {"model": model, "rate": rate, "images": images, "timeout": timeout,
            "load_seconds": loaded - start, "run_seconds": time.perf_counter() - loaded,
            "load_link": load_link, "run_link": got.link, "faults": faults,
            "frame_payload": link.frame_payload,
            "equal_to_golden": bool(np.array_equal(got.predictions, want.predictions)
                                    and np.array_equal(got.counts, want.counts)
                                    and np.array_equal(got.final_v, want.final_v))}
