"""``edgesight-train``: the workstation command. Folder of images → trained run → report → int8 bundle."""

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from edge import __version__
from edge.console import HelpFormatter, add_logging_flags, run_main
from edge.errors import EXIT_NO_INPUT, EXIT_OK, EXIT_USAGE, EdgesightError
from edge.preprocess import COLORS, INTERPOLATIONS, RESIZE_MODES

# The registry's names (train.models.MODELS), listed here so that --help does not import Keras.
MODEL_NAMES = ("tiny", "resnet8", "mobilenetv2")
FLIPS = ("none", "horizontal", "vertical", "both")
# Flags of `fit` that map one to one onto FitConfig fields.
FIT_FLAGS = (
    ("model", str, "architecture", MODEL_NAMES),
    ("size", int, "model input side in pixels", None),
    ("color", str, "model input colour", COLORS),
    ("resize", str, "how frames are fitted to the input", RESIZE_MODES),
    ("interpolation", str, "resize interpolation", tuple(INTERPOLATIONS)),
    ("denoise", float, "filter: non-local-means denoising strength, 0 = off (try 3..10)", None),
    ("blur", int, "filter: Gaussian blur kernel side (odd), 0 = off", None),
    ("clahe", float, "filter: CLAHE contrast equalization clip limit, 0 = off (try 2)", None),
    ("sharpen", float, "filter: unsharp-mask amount, 0 = off (try 1)", None),
    ("width", float, "width multiplier of every layer (mobilenetv2's alpha)", None),
    ("dropout", float, "dropout before the classifier", None),
    ("weight_decay", float, "L2 regularization of the kernels (MLPerf's resnet8: 1e-4)", None),
    (
        "weights",
        str,
        "pretrained backbone (mobilenetv2, --color rgb): 'imagenet' (Keras downloads it once into"
        " $KERAS_HOME/models, default ~/.keras/models) or a local weights file; a linear head is fitted on"
        " the frozen backbone's cached features",
        None,
    ),
    ("fine_tune", int, "with --weights: backbone blocks unfrozen from the top after the head (0 = head only)", None),
    ("fine_tune_epochs", int, "most epochs of fine-tuning (early stopping may end sooner)", None),
    ("fine_tune_learning_rate", float, "learning rate of Adam while fine-tuning", None),
    ("epochs", int, "maximum epochs (early stopping may end sooner); with --weights: --fine-tune-epochs", None),
    ("batch_size", int, "images per step", None),
    ("learning_rate", float, "peak learning rate of Adam (warm-up, then cosine decay)", None),
    ("warmup_epochs", int, "epochs of linear learning-rate warm-up", None),
    ("label_smoothing", float, "label smoothing of the cross-entropy", None),
    ("patience", int, "epochs without validation improvement before stopping", None),
    ("augment", float, "augmentation strength: multiplies every range below; 0 = off", None),
    ("flip", str, "random flips", FLIPS),
    ("rotate", float, "augmentation: rotation range in degrees", None),
    ("shift", float, "augmentation: shift range, fraction of the side", None),
    ("zoom", float, "augmentation: scale range, fraction", None),
    ("brightness", float, "augmentation: brightness range, fraction of 255", None),
    ("contrast", float, "augmentation: contrast range, fraction", None),
    ("val_fraction", float, "share of images for validation (without train/val/test folders)", None),
    ("test_fraction", float, "share of images held out for testing (without train/val/test folders)", None),
    ("min_per_class", int, "fewest images a class may have", None),
    ("cache_dir", str, "preprocessed-image cache (default: $XDG_CACHE_HOME/edgesight)", None),
    ("seed", int, "seed for the split, initialisation, shuffling and augmentation", None),
)


def _digits(args: argparse.Namespace) -> int:
    from train.digits import write_digits

    count = write_digits(args.out, args.size)
    print(f"wrote {count} digit images in 10 class folders under {args.out}")
    return EXIT_OK


def _fit_config(args: argparse.Namespace, parser_defaults: dict):
    """FitConfig from --config FILE (e.g. tune's best.json) overridden by the flags given explicitly."""
    from train.config import FitConfig, config_from_dict

    values = {f.name: getattr(args, f.name) for f in fields(FitConfig) if hasattr(args, f.name)}
    if args.config:
        if not args.config.is_file():
            raise EdgesightError(f"{args.config}: no such config file (--config)", EXIT_NO_INPUT)
        base = config_from_dict(json.loads(args.config.read_text()) | {"data": "", "out": ""}, str(args.config))
        given = {k: v for k, v in values.items() if v != parser_defaults.get(k)}
        values = {f.name: getattr(base, f.name) for f in fields(FitConfig)} | given
    return FitConfig(**values | {"data": str(args.data), "out": str(args.out)})


def _fit(args: argparse.Namespace) -> int:
    if args.resume:
        from train.fit import fit, resume_config

        config = resume_config(args.out, args.epochs if args.epochs != args.parser_defaults["epochs"] else None)
        run = fit(config, resume=True)
    else:
        from train.config import check
        from train.data import discover

        config = _fit_config(args, args.parser_defaults)
        check(config)  # settings and the folder before Keras loads: a typo fails at once
        dataset = discover(Path(config.data), config.min_per_class)
        from train.fit import fit

        run = fit(config, dataset=dataset)
    accuracy = json.loads((run.path / "metrics.json").read_text()).get("test_accuracy")
    if accuracy is not None:
        print(f"float test accuracy {accuracy:.4f}")
    print(f"run written to {run.path}; next: edgesight-train quantize {run.path} --out BUNDLE_DIR")
    return EXIT_OK


def _quantize(args: argparse.Namespace) -> int:
    from train.quantize import GateRefusedError, QuantizeResult, quantize

    def table(result: QuantizeResult, verdict: str) -> None:
        print(f"{'':24}{'float32':>10}{result.io:>10}")
        print(f"{'test accuracy':24}{result.float_accuracy:>10.4f}{result.int8_accuracy:>10.4f}")
        print(f"{'model size (KiB)':24}{result.float_kb:>10.1f}{result.int8_kb:>10.1f}")
        print(f"top-1 agreement float vs int8: {result.agreement:.4f} on {result.test_images} test images")
        print(f"accuracy drop {result.drop_points:.2f} points (gate: --max-drop {args.max_drop:g}): {verdict}")

    try:
        result = quantize(
            args.run, args.out, max_drop=args.max_drop, io_type=args.io, representative=args.representative
        )
    except GateRefusedError as refused:
        table(refused.result, "refused")  # the figures on stdout, the reason as the one error line
        raise
    table(result, "passed")
    print(f"bundle written to {result.bundle}")
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    from train.evaluate import evaluate, resolve
    from train.report import write_report

    if args.top_k < 1:
        raise EdgesightError(f"--top-k must be at least 1 (got {args.top_k})", EXIT_USAGE)
    sources = resolve(args.target, args.bundle)
    evaluation = evaluate(args.target, args.data, args.bundle, top_k=args.top_k)
    out = args.out or report_dir(args.target, args.data, is_run=bool(sources.run and sources.run.path == args.target))
    write_report(evaluation, out, f"edgesight evaluation: {args.target.name}", sources.run)
    for name, m in evaluation.metrics["models"].items():
        print(f"{name:10} accuracy {m['accuracy']:.4f}  macro F1 {m['macro_f1']:.4f}  ECE {m['ece']:.4f}")
    print(f"report written to {out / 'report.html'} (and report.md, metrics.json)")
    return EXIT_OK


def report_dir(target: Path, data: Path | None, *, is_run: bool) -> Path:
    """Where `evaluate` writes without --out: inside a run, else the current folder (never beside a bundle)."""
    if is_run:
        return target / ("report" if data is None else f"report-{data.resolve().name}")
    on = "" if data is None else f"-on-{data.resolve().name}"
    return Path(f"{target.resolve().name}{on}-report")


def _baseline(args: argparse.Namespace) -> int:
    from train.baseline import train_baseline

    result = train_baseline(args.data, args.run)
    print(
        f"HOG + logistic regression ({result.features} features, C={result.regularization:g}):"
        f" val accuracy {result.val_accuracy:.4f}, test accuracy {result.test_accuracy:.4f}"
    )
    print(f"baseline written to {result.path}; `edgesight-train evaluate {args.run}` reports it beside the CNN")
    return EXIT_OK


def _compare(args: argparse.Namespace) -> int:
    from train.compare import EXIT_WORSE, compare, table, write_comparison

    comparison = compare(args.new, args.current, args.data, args.margin)
    out = args.out or Path(f"{args.new.resolve().name}-compare.json")  # as evaluate: never beside the bundle
    write_comparison(comparison, out)
    print(table(comparison))
    print(f"written to {out}")
    return EXIT_OK if comparison.passed else EXIT_WORSE


def _tune(args: argparse.Namespace) -> int:
    from train.tune import BEST_FILE, TRIALS_FILE, tune

    result = tune(_fit_config(args, args.parser_defaults), args.out, args.trials, args.timeout, args.final_epochs)
    columns = list(result.trials[0]) if result.trials else []
    print("  ".join(f"{c:>14}" for c in columns))
    for row in result.trials:
        print("  ".join(f"{v:>14.6g}" if isinstance(v, float) else f"{v!s:>14}" for v in row.values()))
    print(f"best val accuracy {result.best_val_accuracy:.4f}; table in {args.out / TRIALS_FILE}")
    print(
        f"{args.out / BEST_FILE} sets epochs {result.final_epochs} for the full fit"
        f" (the trials ran {result.best.epochs}; change it with --final-epochs or fit --epochs)"
    )
    print(f"next: edgesight-train fit {args.data} --out RUN_DIR --config {args.out / BEST_FILE}")
    return EXIT_OK


def _add_fit_flags(fit: argparse.ArgumentParser) -> dict:
    from train.config import FitConfig

    defaults = {f.name: f.default for f in fields(FitConfig) if f.name not in ("data", "out")}
    for name, kind, help_text, choices in FIT_FLAGS:
        flag = "--" + name.replace("_", "-")
        fit.add_argument(flag, type=kind, default=defaults[name], choices=choices, help=help_text)
    fit.add_argument(
        "--lr", dest="learning_rate", type=float, default=defaults["learning_rate"], help="= --learning-rate"
    )
    fit.add_argument(
        "--balance",
        action=argparse.BooleanOptionalAction,
        default=defaults["balance"],
        help="weight classes by their inverse frequency in the training split",
    )
    return defaults


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgesight-train",
        description="Train an image classifier from a class-per-subfolder image folder and export an int8 bundle.",
        epilog="example:\n  edgesight-train fit photos/ --out runs/photos\n"
        "  edgesight-train quantize runs/photos --out bundles/photos",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgesight-train {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    digits = commands.add_parser(
        "digits",
        help="write scikit-learn's digits as a sample image-folder dataset",
        epilog="example:\n  edgesight-train digits data/digits",
        formatter_class=HelpFormatter,
    )
    digits.add_argument("out", type=Path, help="folder to write <digit>/<n>.png into")
    digits.add_argument("--size", type=int, default=32, help="side of the written images in pixels")
    digits.set_defaults(handler=_digits)

    fit = commands.add_parser(
        "fit",
        help="train a CNN on an image folder",
        description="Train on DATA_DIR: one sub-folder of images per class, or train/, val/ and test/ folders of\n"
        "class sub-folders. Images are prepared once into an on-disk cache. The run directory keeps the\n"
        "config, split, history, best and last checkpoints, dataset fingerprint, data report and versions.",
        epilog="examples:\n"
        "  edgesight-train fit data/digits --out runs/digits --size 32 --color grayscale --flip none\n"
        "  edgesight-train fit photos --out runs/photos --model mobilenetv2 --size 96 --width 0.35\n"
        "  edgesight-train fit photos --out runs/photos --model mobilenetv2 --size 160 --weights imagenet"
        " --fine-tune 3\n"
        "  edgesight-train fit photos --out runs/photos --resume --epochs 60\n"
        "  edgesight-train fit photos --out runs/best --config runs/tune/best.json",
        formatter_class=HelpFormatter,
    )
    fit.add_argument("data", type=Path, metavar="DATA_DIR", help="image folder")
    fit.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="run directory to write")
    fit.add_argument("--config", type=Path, help="JSON of settings (e.g. tune's best.json); flags given override it")
    fit.add_argument("--resume", action="store_true", help="continue RUN_DIR from its last checkpoint")
    fit.set_defaults(handler=_fit, parser_defaults=_add_fit_flags(fit))

    quantize = commands.add_parser(
        "quantize",
        help="convert a run to a full-integer int8 TFLite bundle, gated on its accuracy",
        description="Convert with a class-stratified representative set from the training split (recorded in\n"
        "RUN_DIR/representative.json), evaluate float and int8 on the test split through the device's code\n"
        "path, and write the bundle only if the int8 model lost at most --max-drop accuracy points and did not\n"
        "collapse to a near-constant output. Exit status 65 otherwise.",
        epilog="example:\n  edgesight-train quantize runs/digits --out bundles/digits --max-drop 1.0 --io int8",
        formatter_class=HelpFormatter,
    )
    quantize.add_argument("run", type=Path, metavar="RUN_DIR", help="run directory from `fit`")
    quantize.add_argument("--out", type=Path, required=True, metavar="BUNDLE_DIR", help="bundle directory to write")
    quantize.add_argument("--max-drop", type=float, default=1.0, help="largest accepted accuracy drop, in points")
    quantize.add_argument("--io", default="int8", choices=("int8", "uint8"), help="input and output tensor type")
    quantize.add_argument("--representative", type=int, default=300, help="calibration images (100..500)")
    quantize.set_defaults(handler=_quantize)

    evaluate = commands.add_parser(
        "evaluate",
        help="metrics and a report (md + self-contained html) for a run or a bundle: float, int8, baseline",
        description="Evaluate on the run's test split, or on every image of DATA_DIR (class sub-folders named\n"
        "as the model's labels): top-1 and top-k accuracy, per-class precision/recall/F1, confusion matrix,\n"
        "calibration error and the misclassified images; float (Keras), int8 (the device's code path) and\n"
        "the HOG baseline side by side, whichever exist.",
        epilog="examples:\n  edgesight-train evaluate runs/digits\n"
        "  edgesight-train evaluate bundles/digits photos/held-out --out reports/held-out",
        formatter_class=HelpFormatter,
    )
    evaluate.add_argument("target", type=Path, metavar="RUN_OR_BUNDLE", help="run directory or bundle")
    evaluate.add_argument("data", type=Path, nargs="?", metavar="DATA_DIR", help="images to evaluate on")
    evaluate.add_argument("--bundle", type=Path, help="int8 bundle (default: the one `quantize` recorded in the run)")
    evaluate.add_argument(
        "-o",
        "--out",
        type=Path,
        help="report folder (default: RUN/report, RUN/report-DATA for other images; for a bundle"
        " ./BUNDLE-report or ./BUNDLE-on-DATA-report in the current folder)",
    )
    evaluate.add_argument("--top-k", type=int, default=3, help="k of the top-k accuracy")
    evaluate.set_defaults(handler=_evaluate)

    baseline = commands.add_parser(
        "baseline",
        help="train the classical baseline (OpenCV HOG + scikit-learn logistic regression) on a run's split",
        epilog="example:\n  edgesight-train baseline data/digits --run runs/digits",
        formatter_class=HelpFormatter,
    )
    baseline.add_argument("data", type=Path, metavar="DATA_DIR", help="the image folder the run was trained on")
    baseline.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="run whose split to use")
    baseline.set_defaults(handler=_baseline)

    compare = commands.add_parser(
        "compare",
        help="a new bundle against the current one on the same held-out images: deploy it or keep the old",
        description="Classify the held-out images with both bundles through the device's own code path\n"
        "(edge.classifier): the test split of the run that made NEW when DATA_DIR is the folder it was\n"
        "trained on, else every image of DATA_DIR (class sub-folders). Prints accuracy overall and per class\n"
        "and writes them with the decision as JSON. Exit status 0 when NEW is not worse than CURRENT by\n"
        "more than --margin accuracy points, 1 when it is (keep CURRENT), 65/66 when they cannot be compared.\n"
        "CURRENT 'none': nothing is live yet, NEW passes on its own figures.",
        epilog="examples:\n  edgesight-train compare bundles/garage-2 live/garage-1 data/garage --margin 1\n"
        "  edgesight-train compare bundles/garage-1 none data/garage",
        formatter_class=HelpFormatter,
    )
    compare.add_argument("new", type=Path, metavar="NEW", help="the candidate bundle")
    compare.add_argument("current", metavar="CURRENT", help="the bundle it would replace, or 'none'")
    compare.add_argument("data", type=Path, metavar="DATA_DIR", help="labelled images (class sub-folders)")
    compare.add_argument("--margin", type=float, default=2.0, help="accuracy points NEW may lose and still pass")
    compare.add_argument("--out", type=Path, help="JSON to write (default: NEW-compare.json in the current folder)")
    compare.set_defaults(handler=_compare)

    tune = commands.add_parser(
        "tune",
        help="bounded hyperparameter search (Optuna): learning rate, width, augmentation, regularization",
        description="Run up to --trials short fits with settings drawn by Optuna's TPE sampler, scored by\n"
        "validation accuracy. Writes OUT/trials.csv and OUT/best.json (for `fit --config`, with the epochs\n"
        "of a full fit: --final-epochs). Other fit flags set what is not searched; --epochs is per trial.",
        epilog="example:\n"
        "  edgesight-train tune data/digits --out runs/tune --trials 8 --epochs 10 --size 32 --flip none",
        formatter_class=HelpFormatter,
    )
    tune.add_argument("data", type=Path, metavar="DATA_DIR", help="image folder")
    tune.add_argument("--out", type=Path, required=True, help="folder for the trials, trials.csv and best.json")
    tune.add_argument("--trials", type=int, default=10, help="most trials to run")
    tune.add_argument("--timeout", type=float, help="start no trial after this many seconds")
    tune.add_argument("--config", type=Path, help="JSON of base settings; flags given override it")
    tune.add_argument(
        "--final-epochs",
        type=int,
        help="epochs best.json sets for the full fit (default: the larger of --epochs and fit's default)",
    )
    tune.set_defaults(handler=_tune, parser_defaults=_add_fit_flags(tune))

    for sub in (digits, fit, quantize, evaluate, baseline, compare, tune):
        add_logging_flags(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_main("edgesight-train", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
