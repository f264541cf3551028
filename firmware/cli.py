"""The ``spikefab`` command."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "run"]


PROFILE_NAMES = ("icebreaker", "ulx3s", "tiny")      #: firmware.profiles.PROFILES
BOARD_NAMES = ("icebreaker", "ulx3s-85f")             #: boards.top.BOARDS


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
    if args.core:
        return _core_demo(args)
    from ..sim.demo import run_mnist_demo
    from .run import _Progress
    print(f"building the RTL simulation of the {args.profile} chip (about 2 minutes the first "
          "time, then cached in build/) ...", flush=True)
    try:
        result = run_mnist_demo(model=args.model, count=args.count, profile=args.profile,
                                seed=0 if args.seed is None else args.seed,
                                progress=_Progress(True))
    except ValueError as error:
        raise CommandError(str(error)) from None
    print(result.report())
    return 1 if result.disagreements else 0


def _core_demo(args) -> int:
    from ..sim.demo import run_demo
    from ..sim.golden import AXON_LIMIT, NEURON_LIMIT
    if args.axons > AXON_LIMIT or args.neurons > NEURON_LIMIT:
        raise CommandError(f"--axons must be <= {AXON_LIMIT} and --neurons <= {NEURON_LIMIT}")
    print("building and simulating the core (the first build takes about 15 s) ...",
          flush=True)
    result = run_demo(axons=args.axons, neurons=args.neurons, ticks=args.ticks,
                      lanes=args.lanes, seed=1 if args.seed is None else args.seed)
    print(result.report())
    return 0 if result.agree else 1


def _cmd_bench(args) -> int:
    from ..sim.benchmarks import run_benchmarks
    print(run_benchmarks(quick=args.quick))
    return 0


def _cmd_compile(args) -> int:
    from .compiler import compile_model, summary
    from .model import Model
    from .run import model_path
    image = compile_model(Model.load(model_path(args.model)), args.profile)
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
                           split=args.split, first=args.first, count=args.count,
                           steps=args.steps, seed=args.seed,
                           profile=args.profile, progress=not args.json, baudrate=args.baud,
                           plot=args.plot)
    except LinkError as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def _cmd_build(args) -> int:
    import json
    from ..boards.build import ProgramError, build_board, program_board
    from ..boards.synthesis import SynthesisError
    if not args.json:
        print(f"building the {args.board} bitstream with YoWASP (a few minutes; the first use "
              f"of each tool compiles it once) ...", file=sys.stderr, flush=True)
    try:
        report = build_board(args.board, build_dir=args.build_dir, profile=args.profile,
                             clock_mhz=args.clock, baudrate=args.baud, seed=args.seed)
    except (ValueError, SynthesisError) as error:
        raise CommandError(str(error)) from None
    print(json.dumps(report.as_dict()) if args.json else report)
    if not report.fits():
        over = ", ".join(f"{name} {r['used']:,}/{r['available']:,}"
                         for name, r in report.resources.items() if r["used"] > r["available"])
        raise CommandError(f"the design does not fit the {args.board}'s FPGA: {over}")
    if not report.timing_met:
        raise CommandError(f"timing not met: Fmax {report.fmax_mhz:.1f} MHz < "
                           f"{report.target_mhz:g} MHz; try --clock {int(report.fmax_mhz)} "
                           f"or another --seed")
    if args.program:
        try:
            program_board(report)
        except ProgramError as error:
            raise CommandError(str(error)) from None
        if not args.json:
            print(f"programmed the {args.board}: talk to it with "
                  f"spikefab run --target serial:PORT --profile {report.profile} "
                  f"--baud {report.baudrate}")
    return 0


def _cmd_train(args) -> int:
    from .train import TrainConfig, format_train_report, train_command
    given = {"hidden": args.hidden, "steps": args.steps, "w_bits": args.w_bits,
             "epochs": args.epochs, "qat_epochs": args.qat_epochs, "leak": args.leak,
             "shift": args.shift, "batch_size": args.batch_size, "lr": args.lr,
             "seed": args.seed}
    config = TrainConfig(**{key: value for key, value in given.items() if value is not None})
    report = train_command(args.data, config, args.output, name=args.name,
                           profile=args.profile)
    print(format_train_report(report))
    return 0


def _cmd_import(args) -> int:
    from .importers import from_nir, from_snntorch
    from .mnist import MNISTSet, bundled_slice
    if args.calibrate < 0:
        raise CommandError(f"--calibrate must be >= 0, not {args.calibrate}")
    fmt = args.format
    if fmt is None:
        suffix = args.source.lower().rsplit(".", 1)[-1]
        fmt = {"nir": "nir", "h5": "nir", "hdf5": "nir", "pt": "snntorch", "pth": "snntorch",
               "npz": "snntorch"}.get(suffix)
        if fmt is None:
            raise CommandError(f"cannot tell the format of {args.source!r} from its name; "
                               f"pass --format nir or --format snntorch")
    if fmt == "nir" and (args.beta is not None or args.threshold is not None):
        raise CommandError("--beta and --threshold are for --format snntorch (NIR graphs hold "
                           "their own)")
    if fmt == "snntorch" and args.dt is not None:
        raise CommandError("--dt is for --format nir")

    def convert(calibration=None):
        if fmt == "nir":
            return from_nir(args.source, w_bits=args.w_bits, steps=args.steps,
                            dt=args.dt or 1.0, reset=args.reset, calibration=calibration)
        return from_snntorch(args.source, beta=args.beta, threshold=args.threshold,
                             reset=args.reset, w_bits=args.w_bits, steps=args.steps,
                             calibration=calibration)

    model, report = convert()
    if args.calibrate and model.inputs == 784:
        data = bundled_slice()
        n = min(args.calibrate, len(data))
        subset = MNISTSet(images=data.images[:n], labels=data.labels[:n],
                          indices=data.indices[:n], name=data.name, source=data.source)
        model, report = convert(subset)
    elif args.calibrate:
        report.notes.append(f"no calibration: the model has {model.inputs} inputs, MNIST "
                            f"images 784 pixels")
    model.save(args.output)
    print(report)
    print(f"wrote {args.output}")
    return 0


def _add_import_parser(sub) -> None:
    parser = sub.add_parser("import", help="import a trained float network (NIR graph or "
                            "snnTorch state dict) into a model (.npz)")
    parser.add_argument("source", metavar="SOURCE", help="a .nir file, or a state dict "
                        "(.pt/.pth, needs torch; or .npz of its arrays)")
    parser.add_argument("-o", "--output", metavar="MODEL", required=True,
                        help="where to write the model (.npz)")
    parser.add_argument("--format", choices=("nir", "snntorch"),
                        help="the source's format (default: from the file name)")
    parser.add_argument("--w-bits", type=int, choices=(8, 4), default=8,
                        help="weight width (default 8)")
    parser.add_argument("--steps", type=_positive, metavar="T", help="ticks per image, "
                        "stored in the model and used for the calibration (default 25)")
    parser.add_argument("--beta", type=float, metavar="B", help="snnTorch: Leaky beta where "
                        "the state dict has none")
    parser.add_argument("--threshold", type=float, metavar="TH", help="snnTorch: threshold "
                        "where the state dict has none (default 1.0)")
    parser.add_argument("--reset", choices=("subtract", "zero"), help="reset mode (default: "
                        "NIR 'zero', snnTorch the state dict's, else 'subtract')")
    parser.add_argument("--dt", type=float, metavar="DT", help="NIR: seconds per tick for "
                        "the Euler discretization (default 1; 1e-4 for snnTorch exports)")
    parser.add_argument("--calibrate", type=int, default=200, metavar="N", help="measure "
                        "accuracy before/after quantization on N images of the bundled MNIST "
                        "slice (default 200; 0: skip)")
    parser.set_defaults(run=_cmd_import)


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version
    parser = argparse.ArgumentParser(
        prog="spikefab", description="Spiking neural network hardware generated in Python.")
    parser.add_argument("--version", action="version", version=f"spikefab {version('spikefab')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="stream bundled MNIST through the RTL simulation of the "
                          "chip and the golden model, and compare")
    demo.add_argument("--model", default="mnist-accurate", metavar="M",
                      help="a bundled model (mnist-accurate, mnist-fast) or a model .npz")
    demo.add_argument("--count", type=_positive, default=20, metavar="N",
                      help="how many bundled images (default 20)")
    demo.add_argument("--profile", choices=PROFILE_NAMES, default="icebreaker",
                      help="the chip to simulate (default icebreaker)")
    demo.add_argument("--seed", type=int, default=None,
                      help="encoder seed (default 0; with --core, the scenario seed, default 1)")
    core = demo.add_argument_group("--core: one LIF core on a small random network instead")
    core.add_argument("--core", action="store_true")
    core.add_argument("--axons", type=_positive, default=64)
    core.add_argument("--neurons", type=_positive, default=32)
    core.add_argument("--ticks", type=_positive, default=48)
    core.add_argument("--lanes", type=int, choices=(1, 2, 4, 8, 16), default=8)
    demo.set_defaults(run=_cmd_demo)

    bench = sub.add_parser("bench", help="measure the figures in BENCHMARKS.md")
    bench.add_argument("--quick", action="store_true", help="smaller runs, rougher figures")
    bench.set_defaults(run=_cmd_bench)

    compile_ = sub.add_parser("compile", help="compile a model (.npz) into a chip image")
    compile_.add_argument("model", metavar="MODEL", help="the model, in spikefab's .npz format, "
                          "or a bundled model's name (mnist-accurate, mnist-fast)")
    compile_.add_argument("-o", "--output", metavar="IMAGE", required=True,
                          help="where to write the chip image")
    compile_.add_argument("--profile", choices=PROFILE_NAMES, default="icebreaker",
                          help="the chip to compile for (default: icebreaker)")
    compile_.set_defaults(run=_cmd_compile)

    run = sub.add_parser("run", help="stream rate-encoded MNIST images through a chip")
    run.add_argument("--target", default="golden", metavar="golden|sim|serial:PORT",
                     help="the golden model, the RTL simulation, or a board (default: golden)")
    run.add_argument("--model", default="mnist-accurate", metavar="M",
                     help="a bundled model (mnist-accurate, the default), a model .npz, a "
                     "compiled image, or 'random'")
    run.add_argument("--data", metavar="DIR", help="a folder with the MNIST test files "
                     "(t10k-*-idx?-ubyte[.gz]); the bundled 1000-image slice when omitted")
    run.add_argument("--split", choices=("test", "train"), default="test",
                     help="with --data: the t10k files (default) or the training files")
    run.add_argument("--first", type=int, default=0, metavar="K",
                     help="start at image K of the data (e.g. --split train --first 55000 "
                     "--count 5000: the shipped models' validation images)")
    run.add_argument("--count", type=_positive, default=100, metavar="N")
    run.add_argument("--steps", type=_positive, metavar="T", help="ticks per image "
                     "(default: the model's, else 25)")
    run.add_argument("--seed", type=int, default=0, metavar="S")
    run.add_argument("--profile", choices=PROFILE_NAMES, default="icebreaker")
    run.add_argument("--baud", type=_positive, default=3_000_000,
                     help="serial targets only: the bitstream's rate (spikefab build --baud; 3 Mbaud)")
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.add_argument("--plot", metavar="PNG", help="draw the spike raster (input, layers, "
                     "output) of the first image (needs matplotlib)")
    run.set_defaults(run=_cmd_run)

    build = sub.add_parser("build", help="build a board's bitstream (YoWASP) and report its "
                           "resources and Fmax")
    build.add_argument("--board", required=True, choices=BOARD_NAMES)
    build.add_argument("--profile", choices=PROFILE_NAMES, help="the chip to put on it "
                       "(default: the board's own: icebreaker, ulx3s)")
    build.add_argument("--clock", type=float, metavar="MHZ", help="the PLL's frequency "
                       "(default: the board's own, the fastest that meets timing: "
                       "docs/boards.md)")
    build.add_argument("--baud", type=_positive, default=3_000_000,
                       help="UART rate (default 3 Mbaud)")
    build.add_argument("--build-dir", default="build/boards", metavar="DIR")
    build.add_argument("--seed", type=int, default=1, help="nextpnr's placement seed")
    build.add_argument("--json", action="store_true", help="print one JSON object")
    build.add_argument("--program", action="store_true",
                       help="then load it into the board (openFPGALoader)")
    build.set_defaults(run=_cmd_build)

    train = sub.add_parser("train", help="train a hardware-exact 784-H-10 spiking network on "
                           "MNIST (firmware/train.py)")
    train.add_argument("--data", metavar="DIR", required=True, help="a folder with the MNIST "
                       "training files (train-*-idx?-ubyte[.gz]); images 0-54999 train, "
                       "55000-59999 validate (they hold the bundled slice)")
    train.add_argument("--hidden", type=_positive, metavar="H", help="hidden neurons (128)")
    train.add_argument("--steps", type=_positive, metavar="T", help="ticks per image (25)")
    train.add_argument("--w-bits", type=int, choices=(4, 8), help="weight width (8)")
    train.add_argument("--epochs", type=_positive, metavar="E", help="epochs in all (30)")
    train.add_argument("--qat-epochs", type=int, metavar="Q", help="of which the last Q "
                       "train the integer network (default: a third)")
    train.add_argument("--leak", type=int, metavar="K", help="leak shift of every layer, "
                       "0 = none (2)")
    train.add_argument("--shift", type=int, metavar="P", help="augmentation: random shifts "
                       "of up to P pixels, 0 = none (1)")
    train.add_argument("--batch-size", type=_positive, metavar="B", help="(128)")
    train.add_argument("--lr", type=float, help="Adam learning rate of the float phase")
    train.add_argument("--seed", type=int, metavar="S", help="seeds everything (0)")
    train.add_argument("--name", help="the model's name")
    train.add_argument("--profile", choices=PROFILE_NAMES, default="icebreaker",
                       help="the chip the validation runs on (golden model)")
    train.add_argument("-o", "--output", metavar="MODEL", required=True,
                       help="where to write the model (.npz)")
    train.set_defaults(run=_cmd_train)
    _add_import_parser(sub)
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
