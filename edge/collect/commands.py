"""The teach loop's commands: ``edgesight collect`` and ``dataset-export`` (device), ``pull-data`` (workstation)."""

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.collect import REMOTE_CONFIG, REMOTE_EDGESIGHT
from edge.collect.burst import Kept
from edge.collect.dataset import Dataset, class_problem
from edge.config import load_config, state_dir
from edge.console import HelpFormatter, add_logging_flags, write_json_line
from edge.errors import EXIT_NO_INPUT, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, EdgesightError
from edge.publish.secrets import read_secret

log = logging.getLogger("edgesight")

CAPTURE = "/api/dataset/capture"


def pull_data(args: argparse.Namespace) -> int:
    from edge.collect.pull import fetch, local_hashes, merge  # urllib, http.client, ssl: not for `edgesight run`

    into: Path = args.into
    have = local_hashes(into)
    if args.print_have:
        print(json.dumps({"have": sorted(have)}))
        return EXIT_OK
    if args.tar is not None:
        origin = args.device or args.tar.name
        try:
            with args.tar.open("rb") as stream:
                merged = merge(stream, into, origin, have)
        except FileNotFoundError as e:
            raise EdgesightError(f"{args.tar}: no such file", EXIT_NO_INPUT) from e
    else:
        origin = args.origin
        token = read_secret(str(args.token_file), "http_token", "--token-file") if args.token_file else None
        log.info("%s: asking for the images %s does not have (%d there)", origin, into, len(have))
        with fetch(
            origin,
            sorted(have),
            token=token,
            ssh=os.environ.get("SSH", "ssh"),
            remote_edgesight=args.remote_edgesight,
            remote_config=args.remote_config,
        ) as stream:
            merged = merge(stream, into, args.device or origin, have)
    print(merged.summary(args.device or origin, into), file=sys.stderr)
    for conflict in merged.conflicts:
        log.warning("%s", conflict)
    return EXIT_OK


def dataset_export(args: argparse.Namespace) -> int:
    """On the device: the daemon's export through its HTTP API (token from the config), or from the disk
    when the daemon serves no HTTP, does not answer, or wants a token this command cannot read (a systemd
    credential)."""
    from edge.collect.client import local_daemon
    from edge.collect.pull import fetch, read_have

    config = load_config(args.config)
    have = frozenset() if sys.stdin.isatty() else read_have(sys.stdin.buffer)
    out = sys.stdout.buffer
    daemon = local_daemon(config)
    if daemon is not None:
        url, token = daemon
        try:
            with fetch(url, sorted(have), token=token) as stream:
                shutil.copyfileobj(stream, out)
            out.flush()
            return EXIT_OK
        except EdgesightError as e:  # refused or unreachable before a byte was written: the disk has it all
            log.info("%s; exporting from the disk instead", e)
    Dataset(state_dir(config) / "dataset", read_only=True).export(out, have)
    out.flush()
    return EXIT_OK


def collect(args: argparse.Namespace) -> int:
    from edge.collect.client import local_daemon

    if args.label is None:
        from edge.cli import run_daemon

        return run_daemon(args.config, collect=True)
    problem = class_problem(args.label)
    if problem:
        raise EdgesightError(f"--label: {problem}", EXIT_USAGE)
    config = load_config(args.config)
    daemon = local_daemon(config)
    if daemon is not None:
        try:
            job = start_burst(*daemon, args.label, args.count, args.interval)
        except EdgesightError as e:
            if e.exit_code != EXIT_UNAVAILABLE:
                raise
            log.info("%s; capturing from %s here", e, config.source.uri)
        else:
            return follow_burst(*daemon, job)
    from edge.collect.standalone import burst_here

    kept = burst_here(config, args.label, args.count, args.interval, lambda k: report(k, args.label, args.count))
    return _summary(args.label, args.count, len(kept), sum(k.new for k in kept))


def start_burst(url: str, token: str | None, label: str, count: int, interval_s: float) -> dict[str, Any]:
    """The running daemon holds the camera: ask it for the burst, which it runs as a job of its own."""
    from edge.collect.client import post

    document = {"label": label, "count": count, "interval_s": interval_s}
    with post(url, CAPTURE, document, token, timeout_s=30) as answer:
        try:
            job: dict[str, Any] = json.load(answer)
        except (ValueError, OSError) as e:
            raise EdgesightError(f"{url}{CAPTURE}: the answer is not JSON ({e})", EXIT_UNAVAILABLE) from e
    log.info("the daemon at %s captures %d frame(s) into %s (burst %s)", url, count, label, job["id"])
    return job


def follow_burst(url: str, token: str | None, job: dict[str, Any]) -> int:
    """Poll the daemon's burst, reporting each frame it keeps, until it ends; Ctrl-C stops it there too."""
    from edge.collect.client import get_json, post

    path, label, count = f"{CAPTURE}/{job['id']}", job["label"], job["count"]
    period = min(1.0, max(0.1, job["interval_s"]))
    reported = 0
    try:
        while True:
            for frame in job["frames"]:
                report(Kept(frame["number"], frame["sha256"], frame["new"]), label, count)
                reported = max(reported, frame["number"])
            if job["done"]:
                break
            time.sleep(period)  # a remote job: nothing to wait on but its next answer
            job = get_json(url, f"{path}?after={reported}", token, timeout_s=30)
    except KeyboardInterrupt:  # the person stops the burst: on the daemon too, saying what was kept
        with contextlib.suppress(EdgesightError, ValueError), post(url, f"{path}/stop", {}, token, 5) as answer:
            stopped = json.load(answer)
            kept, new = stopped["kept"], stopped["new"]
            print(f"{label}: stopped after {kept} of {count} frame(s), {new} new", file=sys.stderr)
        raise
    if job["state"] == "failed":
        raise EdgesightError(f"{url}: the burst into {label} failed: {job['error']}", EXIT_UNAVAILABLE)
    why = "the burst was stopped on the daemon" if job["state"] == "stopped" else None
    return _summary(label, count, job["kept"], job["new"], why)


def report(kept: Kept, label: str, count: int) -> None:
    write_json_line({"label": label, "number": kept.number, "sha256": kept.sha256, "new": kept.new}, sys.stdout)
    log.info("%s: %d/%d", label, kept.number, count)


def _summary(label: str, count: int, kept: int, new: int, why: str | None = None) -> int:
    print(f"{label}: {kept} of {count} frame(s) kept, {new} new", file=sys.stderr)
    if kept < count:
        why = why or "the source stopped delivering frames"
        raise EdgesightError(f"{why} after {kept} of {count}", EXIT_UNAVAILABLE)
    return EXIT_OK


def add_commands(commands: argparse._SubParsersAction) -> None:
    collect_parser = commands.add_parser(
        "collect",
        help="collect frames for labelling, or capture a burst straight into a class",
        description="Without --label: run the daemon in collecting mode: frames after the roi crop go into the inbox\n"
        "under [collect] state_dir at its interval and on scene changes, near-copies skipped; label them on the\n"
        "/label page of [http]. [model] is optional: when it loads, its top-k is each frame's suggestion.\n"
        "With --label: keep --count frames, one per --interval seconds, straight into dataset/<label>/, like\n"
        "holding a record button. When the daemon runs (it holds the camera), it is asked to do it over its\n"
        "[http] API with the config's token; otherwise the source is opened here.",
        epilog="examples:\n  edgesight collect --config edgesight.toml\n"
        "  edgesight collect --config /etc/edgesight/edgesight.toml --label open --count 50 --interval 0.5",
        formatter_class=HelpFormatter,
    )
    collect_parser.add_argument("--config", required=True, type=Path, help="TOML config file")
    collect_parser.add_argument("--label", help="the class to capture a burst into")
    collect_parser.add_argument("--count", type=_positive(int), default=20, help="frames in the burst")
    collect_parser.add_argument("--interval", type=_positive(float), default=0.5, help="seconds between frames")
    add_logging_flags(collect_parser)
    collect_parser.set_defaults(handler=collect)

    pull = commands.add_parser(
        "pull-data",
        help="merge a device's labelled images into a folder here (idempotent by content hash)",
        description="Fetch the images a device labelled (on its /label page, or by bursts) that the folder does\n"
        "not have yet, and merge them as <class>/<sha256>.jpg, the layout `edgesight-train fit` reads; their\n"
        "provenance (time, source, roi, suggestion, label, device) is appended to <folder>/provenance.jsonl.\n"
        "Over ssh, the device's `edgesight dataset-export` asks its own daemon on 127.0.0.1 with the token\n"
        "from its config (sudo there, as `make deploy`); SSH='ssh -p 2222' overrides the ssh command.",
        epilog="examples:\n  edgesight pull-data --from pi@garage.local --into data/garage\n"
        "  edgesight pull-data --from http://garage.local:8080 --token-file token --into data/garage\n"
        "  edgesight pull-data --tar garage.tar --device garage --into data/garage   # fetched by other means",
        formatter_class=HelpFormatter,
    )
    source = pull.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="origin", metavar="HOST_OR_URL", help="user@host (ssh), local, or http(s)://")
    source.add_argument("--tar", type=Path, help="merge this export file instead of fetching one")
    source.add_argument(
        "--print-have",
        action="store_true",
        help='print the folder\'s {"have": [sha256, ...]}, to fetch by other means',
    )
    pull.add_argument("--into", type=Path, required=True, metavar="DATA_DIR", help="the folder of class folders")
    pull.add_argument("--device", help="the name recorded as where the images came from (default: --from)")
    pull.add_argument("--token-file", type=Path, help="the daemon's bearer token, for an http(s):// URL")
    pull.add_argument("--remote-edgesight", default=REMOTE_EDGESIGHT, help="edgesight on the device (ssh)")
    pull.add_argument("--remote-config", default=REMOTE_CONFIG, help="the daemon's config on the device (ssh)")
    add_logging_flags(pull)
    pull.set_defaults(handler=pull_data)

    export = commands.add_parser(
        "dataset-export",
        help="write the labelled dataset as a tar stream to stdout (what pull-data runs on the device)",
        description="Ask the running daemon (its [http] address and token from the config) for its dataset as\n"
        'a tar stream, or read it from the state folder when no daemon answers. stdin may hold {"have": [sha256,\n'
        "...]}: images the caller has already are left out.",
        epilog="example:\n  sudo edgesight dataset-export --config /etc/edgesight/edgesight.toml </dev/null >data.tar",
        formatter_class=HelpFormatter,
    )
    export.add_argument("--config", required=True, type=Path, help="the daemon's TOML config file")
    add_logging_flags(export)
    export.set_defaults(handler=dataset_export)


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from e
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive (got {text})")
        return value

    return parse
