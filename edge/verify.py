"""Check a bundle in a child process before it goes live.

A corrupt flatbuffer can crash the interpreter in native code; run in a child, it can only crash the
child. ``python -m edge.verify BUNDLE`` exits 0 when the bundle loads, matches its sha256 and schema,
and reproduces its golden samples; otherwise it prints the reason on one line.
"""

import subprocess
import sys
from pathlib import Path

from edge.errors import EXIT_DATA, EXIT_OK, EdgesightError

VERIFY_TIMEOUT_SECONDS = 120


def verify_in_child(bundle: Path, timeout: float = VERIFY_TIMEOUT_SECONDS) -> None:
    """Raise ``EdgesightError`` with the child's reason unless the bundle passes every check."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "edge.verify", str(bundle)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise EdgesightError(f"{bundle}: verification took longer than {timeout:.0f} s; refusing it", EXIT_DATA) from e
    if result.returncode == EXIT_OK:
        return
    reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    if result.returncode < 0:
        reason = f"the runtime crashed with signal {-result.returncode} while loading it"
    raise EdgesightError(f"{bundle}: refused: {reason or f'exit status {result.returncode}'}", EXIT_DATA)


def main(argv: list[str]) -> int:
    from edge.bundle import load_bundle
    from edge.classifier import Classifier

    if len(argv) != 1:
        print("usage: python -m edge.verify BUNDLE_DIR", file=sys.stderr)
        return 64
    try:
        checked = Classifier(load_bundle(Path(argv[0])), num_threads=1).golden_check()
    except EdgesightError as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    print(f"{argv[0]}: ok, {checked} golden samples agree")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
