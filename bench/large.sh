#!/usr/bin/env bash
# Large-image prediction: megapixels/s and peak memory (RSS) of `wsunet
# predict` streaming a generated RGB tiled BigTIFF of SIDE × SIDE pixels,
# tile and batch at their defaults. Prints one table row per model and side.
#
#   bench/large.sh --model runs/main --sides "16384 32768" [--work DIR] [--wsunet BIN] [-- extra predict flags]
#
# The scene is `wsunet synth --scene SIDE` (a mosaic of generated shapes
# samples, written a band at a time); it is kept in --work for reruns.
set -euo pipefail
cd "$(dirname "$0")/.."
model="" sides="16384 32768" work="${TMPDIR:-/tmp}/wsunet-large" bin="target/release/wsunet"
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --sides) sides="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --wsunet) bin="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "error: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ -n "$model" ] || { echo "error: --model RUN_OR_BPK is required" >&2; exit 2; }
[ -x "$bin" ] || cargo build --release
command -v /usr/bin/time >/dev/null || { echo "error: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
mkdir -p "$work"
echo "| model | image | tiles | seconds | MP/s | peak RSS MiB |"
echo "|---|---|---|---|---|---|"
for side in $sides; do
  scene="$work/scene_$side.tif"
  [ -f "$scene" ] || "$bin" synth --scene "$side" --size 512 --count 32 --seed 1 --out "$scene" >/dev/null
  out="$work/pred_$side"
  rm -rf "$out"
  log="$work/predict_$side.log"
  /usr/bin/time -v "$bin" predict --model "$model" --input "$scene" --out "$out" "$@" >"$log" 2>&1
  line=$(grep ' → ' "$log")
  tiles=$(sed -E 's/.*, ([0-9]+) tile\(s\).*/\1/' <<<"$line")
  seconds=$(sed -E 's/.*, ([0-9.]+) s, .*/\1/' <<<"$line")
  rate=$(sed -E 's/.* ([0-9.]+) MP\/s.*/\1/' <<<"$line")
  rss=$(awk '/Maximum resident set size/ {printf "%.0f", $6 / 1024}' "$log")
  echo "| $(basename "$model") | ${side}² | $tiles | $seconds | $rate | $rss |"
done
