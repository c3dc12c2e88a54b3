"""``edgesight``: the device command. Classify images with a bundle, or run the daemon from a config."""

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from edge import __version__
from edge.classifier import load_classifier
from edge.collect.commands import add_commands as add_teach_commands
from edge.config import ModelConfig, load_config
from edge.console import HelpFormatter, add_logging_flags, run_main, write_json_line
from edge.errors import EXIT_CONFIG, EXIT_DATA, EXIT_NO_INPUT, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, EdgesightError
from edge.images import MAX_PIXELS, ImageError, ImageTooLargeError, image_files, is_image_file, load_image

log = logging.getLogger("edgesight")


def _classify(args: argparse.Namespace) -> int:
    _check_classify_flags(args)
    model = ModelConfig(
        str(args.model),
        threads=args.threads,
        top_k=args.top_k,
        labels=str(args.labels or ""),
        mean=tuple(args.mean or ()),
        std=tuple(args.std or ()),
    )
    classifier = load_classifier(model)
    paths = _expand([*args.paths, *args.input])
    classifier.golden_check()
    skipped = 0
    for path in paths:
        try:
            image = load_image(path, args.max_pixels)
        except ImageError as e:
            skipped += 1
            hint = "; raise --max-pixels to classify it" if isinstance(e, ImageTooLargeError) else ""
            log.warning("%s: %s, skipped%s", path, e, hint)
            continue
        write_json_line({"path": str(path), **classifier.classify(image).to_json()}, sys.stdout)
    if skipped:
        log.warning("%d of %d images skipped (undecodable or too large)", skipped, len(paths))
    return EXIT_DATA if skipped == len(paths) else EXIT_OK


def _check_classify_flags(args: argparse.Namespace) -> None:
    """What argparse cannot say about the flags, as usage errors (exit 64)."""
    problem = ""
    if not args.paths and not args.input:
        problem = "name the images to classify (IMAGE_OR_DIR or --input)"
    elif (args.labels or args.mean or args.std) and args.model.suffix != ".tflite":
        problem = "--labels, --mean and --std are for plain .tflite models; a bundle carries its own"
    elif any(values and len(values) not in (1, 3) for values in (args.mean, args.std)):
        problem = "--mean and --std take one value, or one per channel (three)"
    elif any(s <= 0 for s in args.std or ()):
        problem = "--std values must be positive"
    elif args.max_pixels < 1 or args.top_k < 1 or args.threads < 1:
        problem = "--max-pixels, --top-k and --threads must be at least 1"
    if problem:
        raise EdgesightError(problem, EXIT_USAGE)


def _expand(arguments: list[str]) -> list[Path]:
    paths: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise EdgesightError(f"{path}: the folder holds no images", EXIT_NO_INPUT)
            paths.extend(found)
        elif path.is_file():
            if not is_image_file(path):
                log.warning("%s: not an image file name; trying to decode it anyway", path)
            paths.append(path)
        else:
            raise EdgesightError(f"{path}: no such file or folder", EXIT_NO_INPUT)
    return paths


def _run(args: argparse.Namespace) -> int:
    return run_daemon(args.config)


def run_daemon(config_path: Path, collect: bool = False) -> int:
    """The daemon until SIGINT or SIGTERM; SIGHUP reloads. ``collect``: `edgesight collect`."""
    from edge.service import run
    from edge.systemd import Notifier

    config = load_config(config_path)
    stop, reload = threading.Event(), threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop.set()

    def request_reload(_signum: int, _frame: object) -> None:
        log.info("SIGHUP received: reloading the config and the model")
        reload.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, request_reload)
    notifier = Notifier()
    try:
        run(config, stop, notifier=notifier, reload=reload, config_path=config_path, collect=collect)
    finally:
        notifier.close()
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from edge.capture import first_frame, open_source
    from edge.collect.daemon import COLLECT_SIZE, model_wanted
    from edge.publish.outputs import check_outputs
    from edge.service import crop

    config = load_config(args.config)
    outputs = check_outputs(config.output if config.output.jsonl else None, config.mqtt, config.http)
    if config.model is None or not model_wanted(config, collect=False):
        source = open_source(config.source, COLLECT_SIZE)
        frame = crop(first_frame(source), config.source.roi)
        print(
            f"{args.config}: ok: no model, collecting for labelling; source {source.description}"
            f" (a {frame.shape[1]}x{frame.shape[0]} frame read), outputs: {', '.join(outputs) or 'none'}"
        )
        return EXIT_OK
    classifier = load_classifier(config.model)
    checked = classifier.golden_check()
    spec = classifier.manifest.preprocess
    source = open_source(config.source, (spec.width, spec.height), averaging=spec.interpolation == "area")
    frame = crop(first_frame(source), config.source.roi)
    print(
        f"{args.config}: ok: model {classifier.name} ({checked} golden samples agree), source {source.description}"
        f" (a {frame.shape[1]}x{frame.shape[0]} frame read), outputs: {', '.join(outputs) or 'none'}"
    )
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    """The running daemon's /api/status, asked on its own machine with its config's address and token."""
    from edge.collect.client import get_json, local_daemon

    if not args.timeout > 0:
        raise EdgesightError("--timeout must be positive", EXIT_USAGE)
    config = load_config(args.config)
    daemon = local_daemon(config)
    if daemon is None:
        raise EdgesightError(f"{args.config}: no [http] section, so the daemon serves no status; add one", EXIT_CONFIG)
    url, token = daemon
    hint = f"; name the daemon's token file in {args.config} [http] token_file (a systemd credential is its own)"
    status = get_json(url, "/api/status", token, args.timeout, hint)
    if args.json:
        write_json_line(status, sys.stdout)
    else:
        print(_status_line(url, status))
    return EXIT_OK if (status.get("health") or {}).get("ok") else EXIT_UNAVAILABLE


def _status_line(url: str, status: dict[str, Any]) -> str:
    health = status.get("health") or {}
    model = status.get("model") or {}
    reload = status.get("reload")
    counters = status.get("counters") or {}
    line = f"{url}: {'healthy' if health.get('ok') else 'unhealthy (' + str(health.get('reason')) + ')'}"
    line += f"; model {model.get('name', '?')} {model.get('version', '?')}" if model else "; no model (collecting)"
    line += f"; {status.get('fps', 0)} fps, {counters.get('frames', 0)} frames classified"
    if reload:
        line += "; last reload " + ("ok" if reload.get("ok") else f"refused: {reload.get('message')}")
    return line


def _doctor(args: argparse.Namespace) -> int:
    from edge.doctor import diagnose, render

    model, options, source = args.model, {}, ""
    if args.config is not None:
        config = load_config(args.config)
        source = config.source.uri
        if config.model is not None:
            model = config.model.path
            options = {k: getattr(config.model, k) for k in ("threads", "delegate", "labels", "mean", "std")}
    checks = diagnose(str(model) if model else None, options, source)
    if args.json:
        write_json_line({"checks": [c.to_json() for c in checks]}, sys.stdout)
    else:
        print(render(checks))
    failed = [c.name for c in checks if c.status == "fail"]
    if failed:
        log.error("%d problem(s) stop the daemon here: %s; see the fixes above", len(failed), ", ".join(failed))
        return EXIT_UNAVAILABLE
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgesight",
        description="Run an edgesight int8 model bundle on a Raspberry Pi (or any Linux machine).",
        epilog="examples:\n  edgesight classify --model bundles/digits photos/\n"
        "  edgesight run --config /etc/edgesight/edgesight.toml",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgesight {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    classify = commands.add_parser(
        "classify",
        help="classify image files and folders, one JSON line per image",
        description="Classify images with a bundle or a plain .tflite; folders are walked recursively in sorted\n"
        "order. Each line: path, label, score, topk ([label, score] pairs) and latency_ms. Files whose\n"
        "header declares more than --max-pixels are skipped before decoding, like undecodable ones.",
        epilog="examples:\n  edgesight classify --model bundles/digits data/digits/3 photo.jpg\n"
        "  edgesight classify --model mobilenet_v2_1.0_224_quant.tflite --labels imagenet_labels.txt"
        " --input parrot.jpg\n"
        "  edgesight classify --model float_model.tflite --labels labels.txt --mean 127.5 --std 127.5 photos/",
        formatter_class=HelpFormatter,
    )
    classify.add_argument(
        "--model", required=True, type=Path, help="bundle directory (from `make quantize`), or a plain .tflite"
    )
    classify.add_argument("paths", nargs="*", metavar="IMAGE_OR_DIR", help="image files or folders")
    classify.add_argument(
        "-i", "--input", action="append", default=[], metavar="IMAGE_OR_DIR", help="the same, as pycoral's examples"
    )
    classify.add_argument("--top-k", type=int, default=3, help="how many ranked labels to report")
    classify.add_argument("--threads", type=int, default=2, help="interpreter threads")
    plain = classify.add_argument_group("plain .tflite models (a bundle carries its own)")
    plain.add_argument(
        "-l", "--labels", type=Path, help="labels file, one per line (default: labels.txt beside it, or its metadata)"
    )
    plain.add_argument(
        "--mean", type=float, nargs="+", metavar="M", help="pixel mean (0..255), one value or one per channel"
    )
    plain.add_argument("--std", type=float, nargs="+", metavar="S", help="pixel std, one value or one per channel")
    classify.add_argument(
        "--max-pixels", type=int, default=MAX_PIXELS, help="skip images whose header declares more pixels"
    )
    add_logging_flags(classify)
    classify.set_defaults(handler=_classify)

    run = commands.add_parser(
        "run",
        help="run the daemon: classify every frame of the configured source",
        description="Read frames from the configured source, classify the freshest and write one JSON line per\n"
        "result (ts, frame, label, score, topk, latency_ms, frame_age_ms, state, state_changed). A file\n"
        "source ends at its end; a camera or stream runs until SIGINT or SIGTERM, which end it cleanly\n"
        "with exit 0; a lost camera or stream is reopened with backoff. Config errors exit 78.",
        epilog="example config (paths relative to the file):\n"
        '  [source]\n  uri = "video.mp4"   # or an image folder, a camera index, /dev/video0, rtsp://..., picamera2\n'
        '  [model]\n  path = "bundles/digits"\n  [results]\n  threshold = 0.6\n  smoothing = "ema"\n'
        '  [output]\n  jsonl = "-"\n(every key with its default: README.md)\n\n'
        "example:\n  edgesight run --config edgesight.toml",
        formatter_class=HelpFormatter,
    )
    run.add_argument("--config", required=True, type=Path, help="TOML config file")
    add_logging_flags(run)
    run.set_defaults(handler=_run)

    check = commands.add_parser(
        "check",
        help="validate a config, its secrets, its bundle and its source without running",
        description="Everything `run` checks before it classifies, then exit: the config, the secret files it\n"
        "names (MQTT password, HTTP token, TLS files), the model and its golden samples, and the source,\n"
        "opened and read once within timeout_s. Exit 0 when `run` would start; otherwise one line and the\n"
        "code `run` would exit with (78 config, 65 model or data, 66 missing file); a camera or stream that\n"
        "does not answer now exits 69 (`run` would keep retrying it).",
        epilog="example:\n  edgesight check --config edgesight.toml",
        formatter_class=HelpFormatter,
    )
    check.add_argument("--config", required=True, type=Path, help="TOML config file")
    add_logging_flags(check)
    check.set_defaults(handler=_check)

    status = commands.add_parser(
        "status",
        help="ask the running daemon how it is: health, live model, frames, last reload",
        description="Ask the daemon of this config, on this machine, for its /api/status, with the address and\n"
        "bearer token of its [http] section (read the token file as its owner: sudo). One line, or the\n"
        "document with --json (what `make deploy` reads). Exit 0 when the daemon is healthy, 69 when it is\n"
        "not or does not answer, 78 when the config gives no way to ask it.",
        epilog="examples:\n  sudo edgesight status --config /etc/edgesight/edgesight.toml\n"
        "  edgesight status --config edgesight.toml --json",
        formatter_class=HelpFormatter,
    )
    status.add_argument("--config", required=True, type=Path, help="the daemon's TOML config file")
    status.add_argument("--json", action="store_true", help="the /api/status document as one JSON line")
    status.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")
    add_logging_flags(status)
    status.set_defaults(handler=_status)

    doctor = commands.add_parser(
        "doctor",
        help="what this machine offers: platform, numpy, OpenCV backends, runtimes, cameras, the model",
        description="Check the machine for the daemon and print each finding as ok, warn (an optional part\n"
        "is missing) or fail, with the fix. With --config, what its source needs (picamera2, the V4L2\n"
        "device) and its model must be there: missing, they fail. Exit 0 unless something fails (then 69).",
        epilog="examples:\n  edgesight doctor\n  edgesight doctor --config /etc/edgesight/edgesight.toml\n"
        "  edgesight doctor --model bundles/digits --json",
        formatter_class=HelpFormatter,
    )
    target = doctor.add_mutually_exclusive_group()
    target.add_argument("--model", type=Path, help="also load this bundle or .tflite and run its golden check")
    target.add_argument("--config", type=Path, help="also check the model of this config file")
    doctor.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    add_logging_flags(doctor)
    doctor.set_defaults(handler=_doctor)
    add_teach_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_main("edgesight", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
