"""``python -m bench.compare A/results.json B/results.json``: every ratio of two runs side by side, and how far
apart they are (the difference over their mean), as a markdown table."""

import argparse
import json
import sys
from pathlib import Path

TOLERANCE = 0.10  # two runs back to back must agree this closely on every CPU-time ratio


def rows(first: dict, second: dict, key: str) -> list[tuple[str, float, float, float]]:
    found = []
    for name, a in first.get(key, {}).items():
        b = second.get(key, {}).get(name)
        if b is None:
            continue
        x, y = a["median"], b["median"]
        found.append((name, x, y, abs(x - y) / ((x + y) / 2)))
    return found


def markdown(first: dict, second: dict) -> str:
    lines = [
        f"Runs of {first['date']} and {second['date']} (load average {first['machine']['load_before']} and"
        f" {second['machine']['load_before']} at their start).",
        "",
        "| ratio | first run | second run | apart |",
        "|---|---|---|---|",
    ]
    table = rows(first, second, "ratios")
    lines += [f"| {n} | {x} | {y} | {d:.1%}{'' if d <= TOLERANCE else ' **(over 10 %)**'} |" for n, x, y, d in table]
    within = sum(d <= TOLERANCE for *_, d in table)
    lines += ["", f"{within} of {len(table)} CPU-time ratios within {TOLERANCE:.0%} of each other.", ""]
    lines += ["Wall-clock ratios, for comparison:", "", "| ratio | first run | second run | apart |"]
    lines += ["|---|---|---|---|"]
    lines += [f"| {n} | {x} | {y} | {d:.1%} |" for n, x, y, d in rows(first, second, "wall_ratios")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    print(markdown(json.loads(args.first.read_text()), json.loads(args.second.read_text())), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
