"""The teach loop's commands: ``edgesight pull-data`` (workstation) and ``edgesight dataset-export`` (device)."""

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from edge.collect.client import local_daemon
from edge.collect.dataset import Dataset
from edge.collect.pull import REMOTE_CONFIG, REMOTE_EDGESIGHT, fetch, local_hashes, merge, read_have
from edge.config import load_config, state_dir
from edge.console import HelpFormatter, add_logging_flags
from edge.errors import EXIT_NO_INPUT, EXIT_OK, EXIT_UNAVAILABLE, EdgesightError
from edge.publish.secrets import read_secret

log = logging.getLogger("edgesight")


def pull_data(args: argparse.Namespace) -> int:
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
    when the daemon serves no HTTP or does not answer."""
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
        except EdgesightError as e:
            if e.exit_code != EXIT_UNAVAILABLE:
                raise
            log.info("%s; exporting from the disk instead", e)
    Dataset(state_dir(config) / "dataset", read_only=True).export(out, have)
    out.flush()
    return EXIT_OK


def add_commands(commands: argparse._SubParsersAction) -> None:
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
