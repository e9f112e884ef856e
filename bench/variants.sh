#!/usr/bin/env bash
# What each norm and standardization variant costs: runs `wsunet bench
# --variant V --json` for every variant in interleaved rounds (round 1 runs
# every variant, then round 2, …, so a slow spell of the machine hits them
# all) and prints a markdown table of each phase's median over the rounds,
# with the range of the rounds' medians.
#
#   bench/variants.sh [--rounds N] [--variants a,b,…] [-- wsunet bench flags…]
#
# Default: 3 rounds of ws-gn, gn, ws-bn, bn, ws-none at batch 2, 256×256
# (the default model). Needs a release build and python3 (for the table).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
variants=ws-gn,gn,ws-bn,bn,ws-none
bench_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --variants) variants="$2"; shift 2 ;;
    --) shift; bench_args=("$@"); break ;;
    *) echo "error: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
bin=target/release/wsunet
[[ -x $bin ]] || { echo "error: $bin is missing; run cargo build --release first" >&2; exit 1; }

out=${OUT_DIR:-bench/out}/variants
mkdir -p "$out"
for round in $(seq 1 "$rounds"); do
  for v in ${variants//,/ }; do
    echo "round $round/$rounds: $v" >&2
    "$bin" bench --variant "$v" --json "${bench_args[@]}" >"$out/$v.$round.json"
  done
done

python3 - "$out" "$variants" "$rounds" <<'PY'
import json, statistics, sys
out, variants, rounds = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
phases = ["inference", "train_forward", "train_step"]
first = json.load(open(f"{out}/{variants[0]}.1.json"))
c = first["config"]
print(f"{first['device']}, {first['threads']} threads, batch {c['batch']}, {c['size'][0]}×{c['size'][1]}, "
      f"median ms over {rounds} interleaved rounds (range of the rounds' medians)\n")
print("| variant | parameters | " + " | ".join(phases) + " | peak MiB (train step) |")
print("|---|---:|" + "---:|" * len(phases) + "---:|")
for v in variants:
    reports = [json.load(open(f"{out}/{v}.{r}.json")) for r in range(1, rounds + 1)]
    cells = []
    for p in phases:
        ms = [next(x["median_ms"] for x in rep["results"] if x["phase"] == p) for rep in reports]
        cells.append(f"{statistics.median(ms):.1f} ({min(ms):.1f}–{max(ms):.1f})")
    peak = max(next(x["peak_rss_mib"] or 0 for x in rep["results"] if x["phase"] == "train_step") for rep in reports)
    print(f"| {v} | {reports[0]['parameters']:,} | " + " | ".join(cells) + f" | {peak:.0f} |")
PY
