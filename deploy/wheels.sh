#!/usr/bin/env bash
# Download everything `sudo make install` needs on a Pi into one folder, for Pis without internet.
#   make wheels WHEELS=build/wheels                      # 64-bit Raspberry Pi OS (aarch64), Python 3.11
#   make wheels WHEELS=build/wheels PLATFORM=armv7l      # 32-bit Raspberry Pi OS
# Then, on the Pi: sudo make install WHEELS=/path/to/wheels (no index is asked).
set -euo pipefail

usage() { echo "usage: wheels.sh OUT_DIR [aarch64|armv7l] [PYTHON_VERSION]   (example: wheels.sh build/wheels)"; }
[ $# -ge 1 ] || { usage >&2; exit 64; }
OUT=$1
ARCH=${2:-aarch64}
PY=${3:-3.11}
PIP=${PIP:-python3 -m pip}
SRC=$(cd "$(dirname "$0")/.." && pwd)
say() { printf 'wheels: %s\n' "$*" >&2; }

# pip download --platform does not imply older manylinux tags: list every glibc up to Debian 12's 2.36,
# or pip settles for whatever old release happens to carry the one tag given.
platforms=()
for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_${ARCH}"); done
platforms+=(--platform "manylinux2014_${ARCH}" --platform "linux_${ARCH}")

mkdir -p "$OUT"
say "building the edgesight wheel"
$PIP wheel --quiet --no-deps --no-build-isolation --wheel-dir "$OUT" "$SRC" >/dev/null
pip_download=($PIP download --quiet --disable-pip-version-check --dest "$OUT" --find-links "$OUT"
  --only-binary=:all: --python-version "$PY" --implementation cp "${platforms[@]}")
# `edge` for Raspberry Pi OS without the camera stack; `edge,picamera` (numpy < 2) beside python3-picamera2;
# setuptools and wheel so that pip can also build edgesight from a checkout without an index.
for extras in edge edge,picamera; do
  say "downloading edgesight[$extras] for $ARCH, Python $PY"
  "${pip_download[@]}" "edgesight[$extras]"
done
"${pip_download[@]}" "setuptools>=68" wheel
say "$(find "$OUT" -name '*.whl' | wc -l) wheels in $OUT ($(du -sh "$OUT" | cut -f1))"
