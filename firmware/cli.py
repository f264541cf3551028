"""The ``spikefab`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..hdl.core import LANE_CHOICES
from .cli_args import (BOARD_NAMES, CHIP_CHOICES, PROFILE_HELP, RESET_NAMES, USER_PROFILES,
                       CommandError, _check_build_root, _check_folder, _check_output,
                       _compile_profile, _hidden_sizes, _int_from, _non_negative, _note, _positive,
                       _positive_number, _probability, _rtl_cached, _run_profile, _target,
                       _workers)

__all__ = ["main", "run"]


def _cmd_demo(args) -> int:
    root = _check_build_root()
    if args.core:
        return _core_demo(args)
    from ..sim.demo import run_mnist_demo
    from .run import _Progress

    def starting(chip):
        if _rtl_cached(f"link-{chip.name}-single", harness=True):
            print(f"starting the RTL simulation of the {chip.name} chip ...", flush=True)
        else:
            print(f"building the RTL simulation of the {chip.name} chip (a few minutes the "
                  f"first time, then cached in {root}) ...", flush=True)

    try:
        result = run_mnist_demo(model=args.model, count=args.count, profile=args.profile,
                                board=args.board, seed=0 if args.seed is None else args.seed,
                                progress=_Progress(True), starting=starting)
    except ValueError as error:
        raise CommandError(str(error)) from None
    print(result.report())
    return 1 if result.disagreements else 0


def _core_demo(args) -> int:
    from ..sim.demo import run_demo
    from ..hdl.abi import AXON_LIMIT, NEURON_LIMIT
    if args.axons > AXON_LIMIT or args.neurons > NEURON_LIMIT:
        raise CommandError(f"--axons must be <= {AXON_LIMIT} and --neurons <= {NEURON_LIMIT}")
    if _rtl_cached(f"core-a{args.axons}-n{args.neurons}-w8-p{args.lanes}"):
        print("simulating the core ...", flush=True)
    else:
        print("building and simulating the core (the first build takes about 15 s) ...",
              flush=True)
    result = run_demo(axons=args.axons, neurons=args.neurons, ticks=args.ticks,
                      lanes=args.lanes, seed=1 if args.seed is None else args.seed)
    print(result.report())
    return 0 if result.agree else 1


def _cmd_bench(args) -> int:
    from ..sim.benchmarks import run_benchmarks
    _check_build_root()
    if args.data is not None:
        # Read before the long measurements, so that a wrong folder fails at once.
        from .mnist import load_mnist
        dataset = load_mnist(args.data, split=args.split)
        if args.first + (args.count or 1) > len(dataset.labels):
            raise CommandError(f"--first {args.first} --count {args.count}: {dataset.name} "
                               f"has {len(dataset.labels)} images")
    _note(f"measuring the {'quick' if args.quick else 'full'} benchmarks (RTL simulations are "
          f"built the first time); progress here, the tables on stdout at the end ...")
    print(run_benchmarks(quick=args.quick, progress=_note, data=args.data, split=args.split,
                         first=args.first, count=args.count))
    return 0


def _cmd_compile(args) -> int:
    from .compiler import compile_for, summary
    from .image import MAGIC
    from .model import Model
    from .run import BUNDLED_MODELS, model_path
    if args.model not in BUNDLED_MODELS:
        path = Path(args.model)
        if not path.exists():
            raise CommandError(f"MODEL {args.model!r}: no such file; give a model .npz "
                               f"(spikefab train or spikefab import write one) or one of "
                               f"{', '.join(BUNDLED_MODELS)}")
        if path.is_dir():
            raise CommandError(f"MODEL {args.model!r} is a folder; give a model .npz or one "
                               f"of {', '.join(BUNDLED_MODELS)}")
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) == MAGIC:
                raise CommandError(f"{args.model} is a chip image (spikefab compile's output), "
                                   f"not a model (.npz): there is nothing to compile; run it "
                                   f"as it is with spikefab run --model {args.model} (or "
                                   f"spikefab demo --model), or compile the model it came "
                                   f"from")
    _check_output(args.output, "-o", ".img")
    image = compile_for(Model.load(model_path(args.model)), args.profile, board=args.board)
    image.save(args.output)
    print(summary(image))
    print(f"wrote {args.output}")
    return 0


def _cmd_run(args) -> int:
    import json
    from .driver import LinkError
    from .run import format_report, run_mnist
    if args.plot:
        _check_output(args.plot, "--plot", ".png")
        import importlib.util
        if importlib.util.find_spec("matplotlib") is None:
            raise CommandError("--plot needs matplotlib: pip install matplotlib (or pip "
                               "install 'spikefab[plot]')")
    from .targets import Target, TargetKind
    target = Target.parse(args.target)
    root = _check_build_root() if target.simulated else None

    def on_chip(chip):
        # To stderr, with or without --json: the build is the long part.
        if target.simulated and not _rtl_cached(f"link-{chip.name}-single",
                                                harness=target.kind is TargetKind.SIM):
            _note(f"building the RTL simulation of the {chip.name} chip first (a few "
                  f"minutes, once; then cached in {root}) ...")
    from .shard import ShardError
    try:
        report = run_mnist(target=args.target, model=args.model, data=args.data,
                           split=args.split, first=args.first, count=args.count,
                           steps=args.steps, seed=args.seed,
                           profile=args.profile, board=args.board, progress=not args.json,
                           baudrate=args.baud, plot=args.plot, on_chip=on_chip,
                           timeout=args.timeout, workers=args.workers)
    except (LinkError, ShardError) as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def _cmd_verify(args) -> int:
    import json
    from .shard import ShardError
    from .verify import format_verify, verify_mnist
    _check_build_root()
    try:
        report = verify_mnist(model=args.model, data=args.data, split=args.split,
                              first=args.first, count=args.count, steps=args.steps,
                              seed=args.seed, profile=args.profile, board=args.board,
                              target=args.target, workers=args.workers,
                              progress=not args.json)
    except ShardError as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps(report) if args.json else format_verify(report))
    return 1 if report["mismatches"] else 0


def _cmd_standin(args) -> int:
    from ..sim.standin import FAULT_KINDS, BoardStandIn, LineFaults
    from .run import load_network
    image, _ = load_network(args.model, profile=args.profile, seed=0, board=args.board)
    kinds = tuple(args.kinds.split(",")) if args.kinds else FAULT_KINDS
    faults = LineFaults(rate=args.faults, seed=args.fault_seed, kinds=kinds)
    with BoardStandIn(image.chip_profile().info(), kind="socket" if args.socket else "pty",
                      port=args.socket or 0, faults=faults) as board:
        print(f"the golden {image.profile} chip, as a board, at {board.path}"
              + (f", behind a line that damages {args.faults:.2%} of the bytes"
                 if args.faults else ""), flush=True)
        print(f"  spikefab run --target serial:{board.path} --model {args.model}"
              + (f" --profile {args.profile}" if args.profile else "")
              + (f" --board {args.board}" if args.board else "")
              + ("  --timeout 0.3" if args.faults else ""), flush=True)
        print("(Ctrl-C to stop)", flush=True)
        try:
            board.thread.join()
        except KeyboardInterrupt:
            pass
        applied = board.faults_applied()
    if args.faults:
        print(f"faults applied: {', '.join(f'{k} {v}' for k, v in applied.items())}",
              file=sys.stderr)
    return 0


def _cmd_build(args) -> int:
    import json
    from ..boards.build import (ProgramError, build_board, check_programmer, program_bitstream,
                                program_board)
    from ..boards.synthesis import SynthesisError
    chip = args.profile
    if args.model is not None:
        if args.profile is not None:
            raise CommandError("--model brings its chip: give --model or --profile, not both")
        chip = _image_chip(args.model, args.board)
        args.board = args.board or chip.board
    if args.board is None:
        raise CommandError("which board? give --board (" + ", ".join(BOARD_NAMES) + "), or "
                           "--model IMAGE compiled with spikefab compile MODEL --board B")
    if args.bitstream is not None:
        if not args.program:
            raise CommandError("--bitstream goes with --program: spikefab build --board "
                               f"{args.board} --program --bitstream FILE loads FILE into the "
                               f"board without building")
        if not Path(args.bitstream).is_file():
            raise CommandError(f"--bitstream {args.bitstream}: no such file; spikefab build "
                               f"--board {args.board} writes one into "
                               f"{Path(args.build_dir) / args.board}")
    if args.program:
        # Before minutes of building: is there a board to program?
        try:
            check_programmer(args.board)
        except ProgramError as error:
            raise CommandError(f"{error} (nothing was built)") from None
    if args.bitstream is not None:
        try:
            program_bitstream(args.board, args.bitstream)
        except ProgramError as error:
            raise CommandError(str(error)) from None
        if args.json:
            print(json.dumps({"board": args.board, "programmed": args.bitstream}))
        else:
            print(f"programmed the {args.board} with {args.bitstream}: talk to it with spikefab "
                  f"run --target serial:PORT and the --profile and --baud it was built with")
        return 0
    _check_folder(Path(args.build_dir), "the build folder (--build-dir)",
                  "give --build-dir a folder you can write to")
    _note(f"building the {args.board} bitstream with YoWASP (a few minutes; the first use of "
          f"each tool compiles it once) ...")
    try:
        report = build_board(args.board, build_dir=args.build_dir, profile=chip,
                             clock_mhz=args.clock, baudrate=args.baud, seed=args.seed,
                             progress=_note)
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
            chip = (f"--model {args.model}" if args.model is not None
                    else f"--profile {report.profile}")
            print(f"programmed the {args.board}: talk to it with "
                  f"spikefab run --target serial:PORT {chip} --baud {report.baudrate}")
    return 0


def _image_chip(path: str, board: str | None):
    """The chip of the image at ``path`` (``build --model``), checked against ``board`` if
    given."""
    from .image import ChipImage, ImageError
    try:
        image = ChipImage.load(path)
    except ImageError as error:
        raise CommandError(f"--model {path}: {error} (build takes a compiled image: "
                           f"spikefab compile MODEL --board {board or 'B'} -o IMAGE)") from None
    chip = image.chip_profile()
    if board is not None and chip.board is not None and chip.board != board:
        raise CommandError(f"--model {path} holds a chip generated for the {chip.board}, not "
                           f"the {board}: build it with --board {chip.board}, or compile the "
                           f"model with --board {board}")
    return chip


def _cmd_train(args) -> int:
    from .mnist import _HINT, DataError
    from .train import TrainConfig, format_train_report, train_command
    hint = ("point --data at a folder with the MNIST training files (train-images-idx3-ubyte "
            "and train-labels-idx1-ubyte, or their .gz)")
    epochs = TrainConfig.epochs if args.epochs is None else args.epochs
    if args.qat_epochs is not None and args.qat_epochs > epochs:
        raise CommandError(f"--qat-epochs must be at most --epochs ({epochs}"
                           f"{', the default' if args.epochs is None else ''}), "
                           f"got {args.qat_epochs}")
    if not Path(args.data).is_dir():
        raise CommandError(f"--data {args.data}: the folder does not exist; {hint}")
    _check_output(args.output, "-o", ".npz")
    given = {"hidden": args.hidden, "steps": args.steps, "w_bits": args.w_bits,
             "epochs": args.epochs, "qat_epochs": args.qat_epochs, "leak": args.leak,
             "shift": args.shift, "batch_size": args.batch_size, "lr": args.lr,
             "seed": args.seed, "recurrent": args.recurrent or None, "encoder": args.encoder}
    config = TrainConfig(**{key: value for key, value in given.items() if value is not None})
    try:
        report = train_command(args.data, config, args.output, name=args.name,
                               profile=args.profile)
    except DataError as error:
        # --data is required here: load_mnist's hint to omit it does not apply.
        raise CommandError(str(error).replace(_HINT, hint)) from None
    print(format_train_report(report))
    return 0


def _cmd_import(args) -> int:
    from .importers import from_nir, from_snntorch
    from .mnist import DataError, MNISTSet, bundled_slice, load_mnist
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
    _check_output(args.output, "-o", ".npz")

    def convert(calibration=None):
        if fmt == "nir":
            return from_nir(args.source, w_bits=args.w_bits, steps=args.steps,
                            dt=args.dt or 1.0, reset=args.reset, calibration=calibration)
        return from_snntorch(args.source, beta=args.beta, threshold=args.threshold,
                             reset=args.reset, w_bits=args.w_bits, steps=args.steps,
                             calibration=calibration)

    if args.calibrate_data is not None and not Path(args.calibrate_data).is_dir():
        raise CommandError(f"--calibrate-data {args.calibrate_data}: the folder does not exist; "
                           f"give a folder with the MNIST test files (t10k-*-idx?-ubyte[.gz])")
    model, report = convert()
    if args.calibrate and model.inputs == 784:
        if args.calibrate_data is not None:
            try:
                data = load_mnist(args.calibrate_data, split="test")
            except DataError as error:
                raise CommandError(f"--calibrate-data: {error}") from None
        else:
            data = bundled_slice()
        n = min(args.calibrate, len(data))
        subset = MNISTSet(images=data.images[:n], labels=data.labels[:n],
                          indices=data.indices[:n], name=data.name, source=data.source)
        model, report = convert(subset)
        if args.calibrate_data is None:
            report.notes.append("calibrated on the bundled slice, MNIST training images "
                                "59000-59999: optimistic for a network trained on them; "
                                "--calibrate-data DIR measures on the test set")
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
    parser.add_argument("--weight-bits", "--w-bits", dest="w_bits", type=int, choices=(8, 4),
                        default=8, help="weight width (default: %(default)s)")
    parser.add_argument("--steps", type=_positive, metavar="T", help="ticks per image, "
                        "stored in the model and used for the calibration (default 25)")
    parser.add_argument("--beta", type=float, metavar="B", help="snnTorch: the Leaky "
                        "neurons' beta (decay per tick, 0 to 1) where the state dict has none "
                        "(default: none; then the state dict must hold it)")
    parser.add_argument("--threshold", type=float, metavar="TH", help="snnTorch: threshold "
                        "where the state dict has none (default 1.0)")
    parser.add_argument("--reset", choices=RESET_NAMES, help="reset mode (default: "
                        "NIR 'zero', snnTorch the state dict's, else 'subtract')")
    parser.add_argument("--dt", type=float, metavar="DT", help="NIR: seconds per tick for "
                        "the Euler discretization (default 1; 1e-4 for snnTorch exports)")
    parser.add_argument("--calibrate", type=_non_negative, default=200, metavar="N",
                        help="measure accuracy before/after quantization on N images of the "
                        "bundled MNIST slice, 0: skip (default: %(default)s)")
    parser.add_argument("--calibrate-data", metavar="DIR", help="calibrate on the MNIST test "
                        "files in DIR (t10k-*-idx?-ubyte[.gz]) (default: the bundled slice, "
                        "which holds training images)")
    parser.set_defaults(run=_cmd_import)


def _add_image_arguments(parser, bundled: str, *, default_model: str,
                            default_count: int | None) -> None:
    """The arguments that choose a network and MNIST images (run, verify)."""
    parser.add_argument("--model", default=default_model, metavar="M",
                        help=f"a bundled model ({bundled}), a model .npz, a "
                        "compiled image, or 'random' (default: %(default)s)")
    parser.add_argument("--data", metavar="DIR", help="a folder with the MNIST test files "
                        "(t10k-*-idx?-ubyte[.gz]) (default: the bundled 1000-image slice)")
    parser.add_argument("--split", choices=("test", "train"), default="test",
                        help="with --data: the t10k files or the training files "
                        "(default: %(default)s)")
    parser.add_argument("--first", type=_non_negative, default=0, metavar="K",
                        help="start at image K of the data, e.g. --split train --first 55000 "
                        "--count 5000: the shipped models' validation images (default: "
                        "%(default)s)")
    parser.add_argument("--count", type=_positive, default=default_count, metavar="N",
                           help="how many images (default: "
                           + ("all from --first on" if default_count is None else "%(default)s")
                           + ")")
    parser.add_argument("--steps", type=_positive, metavar="T", help="ticks per image "
                        "(default: the model's, else 25)")
    parser.add_argument("--seed", type=_non_negative, default=0, metavar="S",
                        help="encoder seed: the same seed gives the same spikes on every target "
                        "(default: %(default)s)")
    parser.add_argument("--profile", type=_run_profile, default=None,
                        metavar="{" + ",".join(CHIP_CHOICES) + "}",
                        help=PROFILE_HELP + "; a sim or serial target is that chip")
    parser.add_argument("--board", choices=BOARD_NAMES, help="compile the model for a chip "
                        "generated for this board (as spikefab compile --board) (default: no "
                        "board; --profile decides)")


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version
    from .run import BUNDLED_MODELS
    bundled = ", ".join(BUNDLED_MODELS)
    parser = argparse.ArgumentParser(
        prog="spikefab", description="Spiking neural network hardware generated in Python.")
    parser.add_argument("--version", action="version", version=f"spikefab {version('spikefab')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="stream bundled MNIST through the RTL simulation of the "
                          "chip and the golden model, and compare")
    demo.add_argument("--model", default="mnist-accurate", metavar="M",
                      help=f"a bundled model ({bundled}), a model .npz, a "
                      "compiled image, or 'random' (default: %(default)s)")
    demo.add_argument("--count", type=_positive, default=20, metavar="N",
                      help="how many bundled images (default: %(default)s)")
    demo.add_argument("--profile", type=_run_profile,
                      metavar="{" + ",".join(CHIP_CHOICES) + "}",
                      help="the chip to compile a model for (default: an image's own chip; "
                      "for a model, icebreaker if it fits, else one generated for it)")
    demo.add_argument("--board", choices=BOARD_NAMES, help="compile a model for a chip "
                      "generated for this board (as spikefab compile --board) (default: no "
                      "board)")
    demo.add_argument("--seed", type=_non_negative, default=None, metavar="S",
                      help="encoder seed (default: 0; with --core, the scenario seed, "
                      "default: 1)")
    core = demo.add_argument_group("--core: one LIF core on a small random network instead")
    core.add_argument("--core", action="store_true", help="simulate one LIF core (RTL and "
                      "golden model) instead of the MNIST chip, and draw its spike raster")
    core.add_argument("--axons", type=_positive, default=64, metavar="A",
                      help="the core's input axons, at most 1024 (default: %(default)s)")
    core.add_argument("--neurons", type=_positive, default=32, metavar="N",
                      help="the core's neurons, at most 256 (default: %(default)s)")
    core.add_argument("--ticks", type=_positive, default=48, metavar="T",
                      help="ticks of rate-encoded input (default: %(default)s)")
    core.add_argument("--lanes", type=int, choices=LANE_CHOICES, default=8,
                      help="weights read per cycle (default: %(default)s)")
    demo.set_defaults(run=_cmd_demo)

    bench = sub.add_parser("bench", help="measure the figures in BENCHMARKS.md")
    bench.add_argument("--quick", action="store_true", help="smaller runs, rougher figures")
    bench.add_argument("--data", metavar="DIR", help="also run spikefab verify over the MNIST "
                       "files in DIR with 1 and 2 local workers and a local Ray cluster (the "
                       "table of whole data sets through the RTL) (default: skip it)")
    bench.add_argument("--split", choices=("test", "train"), default="test",
                       help="with --data: the t10k files or the training files (default: "
                       "%(default)s)")
    bench.add_argument("--first", type=_non_negative, default=0, metavar="K",
                       help="with --data: start at image K (default: %(default)s)")
    bench.add_argument("--count", type=_positive, metavar="N", help="with --data: how many "
                       "images (default: all from --first on)")
    bench.set_defaults(run=_cmd_bench)

    compile_ = sub.add_parser("compile", help="compile a model (.npz) into a chip image")
    compile_.add_argument("model", metavar="MODEL", help="the model, in spikefab's .npz format, "
                          f"or a bundled model's name ({bundled})")
    compile_.add_argument("-o", "--output", metavar="IMAGE", required=True,
                          help="where to write the chip image (.img)")
    # The test profiles compile too (tests compile small models for them), unoffered.
    compile_.add_argument("--profile", type=_compile_profile, default=None,
                          metavar="{" + ",".join(CHIP_CHOICES) + "}",
                          help=PROFILE_HELP)
    compile_.add_argument("--board", choices=BOARD_NAMES, help="generate the chip for this "
                          "board: its cores' style, within its logic and block RAM (then "
                          "spikefab build --model IMAGE --board B builds it) (default: no "
                          "board; --profile decides)")
    compile_.set_defaults(run=_cmd_compile)

    run = sub.add_parser("run", help="stream rate-encoded MNIST images through a chip")
    run.add_argument("--target", type=_target, default="golden",
                     metavar="golden|sim|cocotb|serial:PORT", help="the golden model, the "
                     "RTL simulation (sim: clocked from C++; cocotb: the same in a cocotb "
                     "bench, slower), or a board on a serial port (default: %(default)s)")
    _add_image_arguments(run, bundled, default_model="mnist-accurate", default_count=100)
    run.add_argument("--baud", type=_positive, default=3_000_000,
                     help="serial targets only: the bitstream's rate, as built with spikefab "
                     "build --baud (default: %(default)s)")
    run.add_argument("--timeout", type=_positive_number(" of seconds"), default=2.0,
                     metavar="S", help="serial targets only: how long to wait for an answer "
                     "before sending the request again (default: %(default)s)")
    run.add_argument("--workers", type=_workers, metavar="N|ray|ray://HOST:PORT",
                     help="RTL simulations (sim, cocotb) only: split the images over N local "
                     "worker processes, each with its own simulator, or over a Ray cluster "
                     "(ray: one started for the run; ray://HOST:PORT: a running one; needs "
                     "pip install 'spikefab[ray]'); the results are the same for any "
                     "(default: one process per core)")
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.add_argument("--plot", metavar="PNG", help="draw the spike raster (input, layers, "
                     "output) of the first image into PNG (needs matplotlib); the spikes are "
                     "the golden model's whatever the --target: a chip's inner layers cannot "
                     "be read back (default: no plot)")
    run.set_defaults(run=_cmd_run)

    verify = sub.add_parser("verify", help="check the RTL simulation against the golden "
                            "model on every image (predictions, output spikes, synaptic ops)")
    _add_image_arguments(verify, bundled, default_model="mnist-fast",
                         default_count=None)
    verify.add_argument("--target", type=_target, default="sim", metavar="sim|cocotb",
                        help="the RTL simulation to check (default: %(default)s)")
    verify.add_argument("--workers", type=_workers, metavar="N|ray|ray://HOST:PORT",
                        help="N local worker processes, each with its own simulator, or a Ray "
                        "cluster, as for run (default: one process per core)")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(run=_cmd_verify)

    standin = sub.add_parser("standin", help="serve a chip's golden model as a board does, "
                             "on a pseudo-terminal or a TCP socket, for --target serial:..., "
                             "optionally behind a noisy line")
    standin.add_argument("--model", default="mnist-accurate", metavar="M",
                         help="the model whose chip to serve, as spikefab run --model takes "
                         "it (default: %(default)s)")
    standin.add_argument("--profile", type=_run_profile, default=None,
                         metavar="{" + ",".join(CHIP_CHOICES) + "}", help=PROFILE_HELP)
    standin.add_argument("--board", choices=BOARD_NAMES, help="as spikefab run --board "
                         "(default: no board; --profile decides)")
    standin.add_argument("--socket", type=_positive, metavar="PORT", help="serve on "
                         "127.0.0.1:PORT (serial:socket://127.0.0.1:PORT) (default: a pty)")
    standin.add_argument("--faults", type=_probability, default=0.0, metavar="RATE",
                         help="the fraction of bytes, either way, that the line damages "
                         "(default: %(default)s)")
    standin.add_argument("--kinds", metavar="K,K", help="the faults, some of flip, drop, "
                         "duplicate, delay, cut (default: all)")
    standin.add_argument("--fault-seed", type=_non_negative, default=0, metavar="S",
                         help="the line's random seed (default: %(default)s)")
    standin.set_defaults(run=_cmd_standin)

    build = sub.add_parser("build", help="build a board's bitstream (YoWASP) and report its "
                           "resources and Fmax; or program a board")
    build.add_argument("--board", choices=BOARD_NAMES,
                       help="the board to build for (default: the board --model's image was "
                       "compiled for; required without one)")
    build.add_argument("--profile", choices=USER_PROFILES, help="the chip to put on it "
                       "(default: the board's own: icebreaker, ulx3s)")
    build.add_argument("--model", metavar="IMAGE", help="a compiled image (spikefab compile "
                       "MODEL --board B): build the chip it was compiled for (default: the "
                       "chip of --profile)")
    build.add_argument("--clock", type=_positive_number(" of MHz"), metavar="MHZ",
                       help="the PLL's frequency (default: the board's own, the fastest that "
                       "meets timing: docs/boards.md)")
    build.add_argument("--baud", type=_positive, default=3_000_000,
                       help="UART rate (default: %(default)s)")
    build.add_argument("--build-dir", default="build/boards", metavar="DIR",
                       help="where the build files and the bitstream go, in a folder per "
                       "board (default: %(default)s)")
    build.add_argument("--seed", type=int, default=1,
                       help="nextpnr's placement seed (default: %(default)s)")
    build.add_argument("--json", action="store_true", help="print one JSON object")
    build.add_argument("--program", action="store_true",
                       help="then load the bitstream into the board (openFPGALoader); the "
                       "board is looked for first, before building")
    build.add_argument("--bitstream", metavar="FILE",
                       help="with --program: load FILE (e.g. build/boards/icebreaker/top.bin) "
                       "and build nothing (default: build one)")
    build.set_defaults(run=_cmd_build)

    train = sub.add_parser("train", help="train a hardware-exact 784-H-10 spiking network on "
                           "MNIST (firmware/train/)")
    train.add_argument("--data", metavar="DIR", required=True, help="a folder with the MNIST "
                       "training files (train-*-idx?-ubyte[.gz]); images 0-54999 train, "
                       "55000-59999 validate (they hold the bundled slice)")
    train.add_argument("--hidden", type=_hidden_sizes, metavar="H[,H...]",
                       help="hidden neurons, or one size per hidden layer, e.g. 256,128; "
                       "layers wider than a core are spread over cores (default: 128)")
    train.add_argument("--recurrent", action="store_true", help="every hidden layer also "
                       "takes its own spikes of the tick before, all to all (default: "
                       "feed-forward only)")
    train.add_argument("--steps", type=_positive, metavar="T",
                       help="ticks per image (default: 25)")
    train.add_argument("--weight-bits", "--w-bits", dest="w_bits", type=int, choices=(4, 8),
                       help="weight width (default: 8)")
    train.add_argument("--epochs", type=_positive, metavar="E",
                       help="epochs in all (default: 30)")
    train.add_argument("--qat-epochs", type=_non_negative, metavar="Q", help="of which the "
                       "last Q train the integer network, 0 to --epochs (default: a third, at "
                       "least 1)")
    train.add_argument("--leak", type=_int_from(0, 15), metavar="K", help="leak shift of every "
                       "layer, 0 = none, up to 15 (default: 2)")
    train.add_argument("--shift", type=_int_from(0, 8), metavar="P", help="augmentation: "
                       "random shifts of up to P pixels, 0 = none, up to 8 (default: 1)")
    train.add_argument("--batch-size", type=_positive, metavar="B",
                       help="images per step (default: 128)")
    train.add_argument("--lr", type=_positive_number(), metavar="LR",
                       help="Adam learning rate of the float phase (default: 0.002)")
    train.add_argument("--seed", type=_non_negative, metavar="S",
                       help="seeds everything (default: 0)")
    train.add_argument("--encoder", choices=("pcg64", "xorshift32"),
                       help="the rate encoder to train and validate with, recorded in the "
                       "model: xorshift32 is the chip's own, which boards with the encoder "
                       "run from pixels (default: pcg64)")
    train.add_argument("--name", help="the model's name (default: none)")
    train.add_argument("--profile", choices=USER_PROFILES, default="icebreaker",
                       help="the chip the validation runs on (golden model) "
                       "(default: %(default)s)")
    train.add_argument("-o", "--output", metavar="MODEL", required=True,
                       help="where to write the model (.npz)")
    train.set_defaults(run=_cmd_train)
    _add_import_parser(sub)
    return parser


def _os_error(exc: OSError) -> str:
    """One line for an OSError: what failed, on which path, and what to do."""
    where = " -> ".join(str(name) for name in (exc.filename, exc.filename2) if name)
    what = exc.strerror or str(exc)
    fix = {
        "FileNotFoundError": "check the path (its folder must exist)",
        "IsADirectoryError": "give a file, not a folder",
        "NotADirectoryError": "a part of the path is a file, not a folder",
        "PermissionError": "choose a path this user may use",
    }.get(type(exc).__name__, "check the path and the disk")
    return f"{where}: {what}; {fix}" if where else f"{what}; {fix}"


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
    except OSError as exc:   # a file or folder the checks before the work did not foresee
        print(f"spikefab {args.command}: error: {_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
