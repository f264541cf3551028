"""The ``spikefab`` command."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "run"]


class CommandError(Exception):
    """A failure the user can act on: printed without a traceback, exit status 1."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _cmd_demo(args) -> int:
    from ..sim.demo import run_demo
    from ..sim.golden import AXON_LIMIT, NEURON_LIMIT
    if args.axons > AXON_LIMIT or args.neurons > NEURON_LIMIT:
        raise CommandError(f"--axons must be <= {AXON_LIMIT} and --neurons <= {NEURON_LIMIT}")
    print("building and simulating the core (the first build takes about 15 s) ...",
          flush=True)
    result = run_demo(axons=args.axons, neurons=args.neurons, ticks=args.ticks,
                      lanes=args.lanes, seed=args.seed)
    print(result.report())
    return 0 if result.agree else 1


def _cmd_bench(args) -> int:
    from ..sim.benchmarks import run_benchmarks
    print(run_benchmarks(quick=args.quick))
    return 0


def _cmd_compile(args) -> int:
    from .compiler import compile_model, summary
    from .model import Model
    image = compile_model(Model.load(args.model), args.profile)
    image.save(args.output)
    print(summary(image))
    print(f"wrote {args.output}")
    return 0


def _cmd_run(args) -> int:
    import json
    from .driver import LinkError
    from .run import format_report, run_mnist
    if not args.json:
        if args.target == "sim":
            print("building and starting the RTL simulation (the first build takes a few "
                  "minutes) ...", file=sys.stderr, flush=True)
    try:
        report = run_mnist(target=args.target, model=args.model, data=args.data,
                           count=args.count, steps=args.steps, seed=args.seed,
                           profile=args.profile, progress=not args.json, baudrate=args.baud)
    except LinkError as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version
    parser = argparse.ArgumentParser(
        prog="spikefab", description="Spiking neural network hardware generated in Python.")
    parser.add_argument("--version", action="version", version=f"spikefab {version('spikefab')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="simulate one core in RTL and in the golden model")
    demo.add_argument("--axons", type=_positive, default=64)
    demo.add_argument("--neurons", type=_positive, default=32)
    demo.add_argument("--ticks", type=_positive, default=48)
    demo.add_argument("--lanes", type=int, choices=(1, 2, 4, 8, 16), default=8)
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(run=_cmd_demo)

    bench = sub.add_parser("bench", help="measure the figures in BENCHMARKS.md")
    bench.add_argument("--quick", action="store_true", help="smaller runs, rougher figures")
    bench.set_defaults(run=_cmd_bench)

    compile_ = sub.add_parser("compile", help="compile a model (.npz) into a chip image")
    compile_.add_argument("model", metavar="MODEL", help="the model, in spikefab's .npz format")
    compile_.add_argument("-o", "--output", metavar="IMAGE", required=True,
                          help="where to write the chip image")
    compile_.add_argument("--profile", choices=("icebreaker", "tiny"), default="icebreaker",
                          help="the chip to compile for (default: icebreaker)")
    compile_.set_defaults(run=_cmd_compile)

    run = sub.add_parser("run", help="stream rate-encoded MNIST images through a chip")
    run.add_argument("--target", default="golden", metavar="golden|sim|serial:PORT",
                     help="the golden model, the RTL simulation, or a board (default: golden)")
    run.add_argument("--model", default="random", metavar="M",
                     help="a model .npz, a compiled image, or 'random' (default)")
    run.add_argument("--data", metavar="DIR", help="a folder with the MNIST test files "
                     "(t10k-*-idx?-ubyte[.gz]); the bundled 1000-image slice when omitted")
    run.add_argument("--count", type=_positive, default=100, metavar="N")
    run.add_argument("--steps", type=_positive, metavar="T", help="ticks per image "
                     "(default: the model's, else 25)")
    run.add_argument("--seed", type=int, default=0, metavar="S")
    run.add_argument("--profile", choices=("icebreaker", "tiny"), default="icebreaker")
    run.add_argument("--baud", type=_positive, default=1_000_000, help="serial targets only")
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.set_defaults(run=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..sim.runner import SimulationError
    try:
        return args.run(args)
    except (CommandError, SimulationError, ValueError) as exc:
        print(f"spikefab {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. piped into `head`
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
