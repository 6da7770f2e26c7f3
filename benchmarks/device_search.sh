#!/usr/bin/env bash
# The search benchmarks on a machine with many cores (the lead runs it on the device machine, 16 cores):
# the guided search against the exhaustive one on the sample digits CNN (bench_search.py, 1,728
# configurations) and the N-MNIST search under a quarter of the float memory (search_nmnist.py). Expects the
# N-MNIST checkpoint and its validation frames in .device/ (made here by hand: see docs/results.md).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/qnoise-out}"; mkdir -p "$OUT"
WORKERS="${WORKERS:-14}"
python3 -c "from qnoise.probe.cpu_kernel import warm_up; warm_up()"  # one compile before the workers start
timeout 300 python3 benchmarks/bench_search.py --limit 256 --workers "$WORKERS" --out /tmp/bench-search \
    2>&1 | grep -v "config\]" | tee "$OUT/bench_search.txt"
timeout 240 python3 benchmarks/search_nmnist.py --checkpoint .device/nmnist-float-s0 \
    --data-file .device/nmnist-val.npz --workers "$WORKERS" --out /tmp/search-nmnist \
    2>&1 | grep -v "config\]" | tee "$OUT/search_nmnist.txt"
