"""``edgesight-train``: the workstation command. Folder of images → trained run → int8 bundle."""

import argparse
import sys
from pathlib import Path

from edge import __version__
from edge.console import HelpFormatter, add_logging_flags, run_main
from edge.errors import EXIT_OK
from edge.preprocess import COLORS, INTERPOLATIONS, RESIZE_MODES


def _digits(args: argparse.Namespace) -> int:
    from train.digits import write_digits

    count = write_digits(args.out, args.size)
    print(f"wrote {count} digit images in 10 class folders under {args.out}")
    return EXIT_OK


def _fit(args: argparse.Namespace) -> int:
    from train.fit import FitConfig, fit

    config = FitConfig(
        data=str(args.data),
        out=str(args.out),
        model=args.model,
        size=args.size,
        color=args.color,
        resize=args.resize,
        interpolation=args.interpolation,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        patience=args.patience,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
    )
    run = fit(config)
    print(f"run written to {run.path}; next: edgesight-train quantize {run.path} --out BUNDLE_DIR")
    return EXIT_OK


def _quantize(args: argparse.Namespace) -> int:
    from train.quantize import quantize

    result = quantize(args.run, args.out)
    print(f"{'':24}{'float32':>10}{'int8':>10}")
    print(f"{'test accuracy':24}{result.float_accuracy:>10.4f}{result.int8_accuracy:>10.4f}")
    print(f"{'model size (KiB)':24}{result.float_kb:>10.1f}{result.int8_kb:>10.1f}")
    print(f"top-1 agreement float vs int8: {result.agreement:.4f} on {result.test_images} test images")
    print(f"bundle written to {result.bundle}")
    return EXIT_OK


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
        description="Train on DATA_DIR (one sub-folder of images per class). The run directory keeps the\n"
        "Keras model, the split, the resolved config and the training history.",
        epilog="example:\n  edgesight-train fit data/digits --out runs/digits --size 32 --color grayscale",
        formatter_class=HelpFormatter,
    )
    fit.add_argument("data", type=Path, metavar="DATA_DIR", help="class-per-subfolder image folder")
    fit.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="run directory to write")
    fit.add_argument("--model", default="tiny", choices=("tiny",), help="architecture")
    fit.add_argument("--size", type=int, default=64, help="model input side in pixels")
    fit.add_argument("--color", default="rgb", choices=COLORS, help="model input colour")
    fit.add_argument("--resize", default="squash", choices=RESIZE_MODES, help="how frames are fitted to the input")
    fit.add_argument("--interpolation", default="area", choices=tuple(INTERPOLATIONS), help="resize interpolation")
    fit.add_argument("--epochs", type=int, default=30, help="maximum epochs (early stopping may end sooner)")
    fit.add_argument("--batch-size", type=int, default=32, help="images per step")
    fit.add_argument("--lr", type=float, default=2e-3, help="initial learning rate (cosine decay)")
    fit.add_argument("--patience", type=int, default=6, help="epochs without validation improvement before stopping")
    fit.add_argument("--val-fraction", type=float, default=0.15, help="share of images for validation")
    fit.add_argument("--test-fraction", type=float, default=0.15, help="share of images held out for testing")
    fit.add_argument("--seed", type=int, default=0, help="seed for the split, initialisation and shuffling")
    fit.set_defaults(handler=_fit)

    quantize = commands.add_parser(
        "quantize",
        help="convert a run to a full-integer int8 TFLite bundle",
        description="Convert with a representative set from the training split, evaluate float and int8 on the\n"
        "test split through the device's code path, pick golden samples and write the bundle.",
        epilog="example:\n  edgesight-train quantize runs/digits --out bundles/digits",
        formatter_class=HelpFormatter,
    )
    quantize.add_argument("run", type=Path, metavar="RUN_DIR", help="run directory from `fit`")
    quantize.add_argument("--out", type=Path, required=True, metavar="BUNDLE_DIR", help="bundle directory to write")
    quantize.set_defaults(handler=_quantize)

    for sub in (digits, fit, quantize):
        add_logging_flags(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_main("edgesight-train", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
