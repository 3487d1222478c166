#!/bin/sh
# What the `tracing` feature costs when compiled in with no subscriber:
# mproc's runner of `pool_map_chunksize1` (the pool's per-task overhead at
# its most visible) from a build without the feature and one with it, run
# in turn (off, on, on, off, off, on, ...) so that the machine's drift
# hits both alike.
# Prints each run's median and the ratio of the medians of all runs
# (on / off: 1.00 = no cost; above 1 the traced build is faster).
#
#   bench/tracing-cost.sh [ROUNDS] [WORKLOAD]      (defaults: 6, pool_map_chunksize1)
#
# On a busy machine single runs drift 2x: take many rounds (12 or more).
#
# Builds into the workspace's target directory; writes only under a
# temporary directory, removed at the end. CPython is not run.
set -eu
rounds=${1:-6}
workload=${2:-pool_map_chunksize1}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release -q -p mproc-bench
cp "$target/release/mproc-bench" "$tmp/off"
cargo build --release -q -p mproc-bench --features tracing
cp "$target/release/mproc-bench" "$tmp/on"
i=1
while [ "$i" -le "$rounds" ]; do
    # Off first in odd rounds, on first in even ones: a bias of the first
    # or second run of a pair cancels out.
    order="off on"
    [ $((i % 2)) -eq 0 ] && order="on off"
    for build in $order; do
        MPROC_BENCH_PYTHON=/nonexistent "$tmp/$build" --quick --reps 11 --filter "$workload" \
            --out "$tmp/$build-$i" >/dev/null 2>&1
    done
    i=$((i + 1))
done
python3 - "$tmp" "$rounds" "$workload" <<'PY'
import json, statistics, sys
tmp, rounds, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def median(build, i):
    d = json.load(open(f"{tmp}/{build}-{i}/latest.json"))
    w = next(w for w in d["workloads"] if w["name"] == name)
    return w["runners"]["mproc"]["median"], w["unit"]
runs = {b: [median(b, i) for i in range(1, rounds + 1)] for b in ("off", "on")}
unit = runs["off"][0][1]
for i in range(rounds):
    print(f"round {i + 1}: off {runs['off'][i][0]:12.0f}  on {runs['on'][i][0]:12.0f}  {unit}")
off = statistics.median(m for m, _ in runs["off"])
on = statistics.median(m for m, _ in runs["on"])
ratios = [on_ / off_ for (on_, _), (off_, _) in zip(runs["on"], runs["off"])]
print(f"{name}: median off {off:.0f}, on {on:.0f} {unit}; on/off = {on / off:.3f}"
      f" (per round: median {statistics.median(ratios):.3f}, min {min(ratios):.3f}, max {max(ratios):.3f})")
PY
