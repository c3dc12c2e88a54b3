"""What every edgesight command shares: logging to stderr, JSON lines to stdout, one-line errors."""

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import IO, Any

from edge import library_logs
from edge.errors import EXIT_OK, EXIT_SOFTWARE, EXIT_USAGE, EdgesightError


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the examples in epilogs as written and show every default."""


def add_logging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="messages on stderr; debug adds the libraries' own (TensorFlow, LiteRT, OpenCV, FFmpeg)",
    )


# syslog priorities by logging level, for the journal's "<N>" line prefixes (sd-daemon(3)).
PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """``<priority>name: message``: journald stores the level and adds the time itself."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{PRIORITIES.get(record.levelno, 6)}>{super().format(record)}"


def stderr_is_journal() -> bool:
    """True when systemd connected stderr to the journal ($JOURNAL_STREAM names its device and inode)."""
    try:
        device, inode = (int(n) for n in os.environ.get("JOURNAL_STREAM", "").split(":"))
        stat = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (stat.st_dev, stat.st_ino) == (device, inode)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
    library_logs.quiet(level)


def write_json_line(record: dict[str, Any], stream: IO[str]) -> None:
    stream.write(json.dumps(record, separators=(",", ":")) + "\n")
    stream.flush()


def run_main(prog: str, parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse, dispatch to ``args.handler``, and turn expected failures into one line and an exit code."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        # argparse has printed the usage and exits 2 on a mistake; scripts and the README expect EX_USAGE.
        return EXIT_USAGE if e.code == 2 else int(e.code or 0)
    setup_logging(args.log_level)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except EdgesightError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # The reader of our stdout went away (`| head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception:
        logging.getLogger(prog).exception("unexpected error: please report it with the traceback below")
        return EXIT_SOFTWARE
