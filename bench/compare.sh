#!/usr/bin/env bash
# Runs `wsunet bench` and python/bench_torch.py back to back with the same
# settings and thread count, and prints the speed ratios (wsunet / PyTorch
# throughput: > 1 means wsunet is faster). On the CPU, when the Python has
# onnxruntime, ONNX Runtime times the inference phase too, on the ONNX file
# of the very model wsunet timed (`wsunet bench --onnx`): CPU execution
# provider, default graph optimizations, the same threads, batch, size,
# warm-up and repetitions (the "ORT" columns; "vs ORT" > 1: wsunet faster).
#
#   bench/compare.sh [--batch-size N] [--size HxW] [--reps N] [--warmup N] [--threads N] [--no-ws] [--device D] [--torch-device T]
#
# --device is wsunet's (cpu, gpu[:N], vulkan[:N], cuda[:N]); the twin runs on --torch-device,
# by default cpu for cpu and cuda for a GPU device.
#
# Needs a release build (cargo build --release) and a Python with torch:
# $PYTHON, else .venv/bin/python, else python3. Writes both JSON reports to
# $OUT_DIR (default bench/out/).
set -euo pipefail
cd "$(dirname "$0")/.."

threads=$(nproc)
device=cpu
torch_device=
args=()
phases=inference  # wsunet bench's phases include it unless --phases leaves it out
while [[ $# -gt 0 ]]; do
  case "$1" in
    --phases) phases="$2" ;;&
    --threads) threads="$2"; shift 2 ;;
    --device) device="$2"; shift 2 ;;
    --torch-device) torch_device="$2"; shift 2 ;;
    --no-ws) args+=("$1"); shift ;;
    --batch-size|--size|--reps|--warmup|--config|--num-classes|--phases) args+=("$1" "$2"); shift 2 ;;
    *) echo "error: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

if [[ -z "$torch_device" ]]; then
  case "$device" in cpu) torch_device=cpu ;; *) torch_device=cuda ;; esac
fi

python=${PYTHON:-}
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
if ! "$python" -c "import torch" 2>/dev/null; then
  echo "error: $python cannot import torch; set PYTHON or create .venv (see README, Parity)" >&2
  exit 2
fi
bin=${WSUNET:-target/release/wsunet}
if [[ ! -x "$bin" ]]; then
  echo "error: $bin is missing; run cargo build --release first" >&2
  exit 2
fi

out=${OUT_DIR:-bench/out}
mkdir -p "$out"
rm -f "$out/ort.json" "$out/model.onnx"
onnx=()
if [[ "$device" == cpu && ",$phases," == *,inference,* ]] && "$python" -c "import onnxruntime" 2>/dev/null; then
  onnx=(--onnx "$out/model.onnx")
fi
"$bin" bench "${args[@]}" --device "$device" --threads "$threads" --json "${onnx[@]}" > "$out/wsunet.json"
"$python" python/bench_torch.py "${args[@]}" --device "$torch_device" --threads "$threads" --json > "$out/pytorch.json"
if [[ ${#onnx[@]} -gt 0 ]]; then
  # The settings wsunet ran with, defaults included, from its report.
  read -r batch size reps warmup < <("$python" -c 'import json, sys
c = json.load(open(sys.argv[1]))["config"]
print(c["batch"], "%dx%d" % tuple(c["size"]), c["reps"], c["warmup"])' "$out/wsunet.json")
  "$python" python/check_onnx.py bench "$out/model.onnx" --batch "$batch" --sizes "$size" \
    --reps "$reps" --warmup "$warmup" --threads "$threads" --json > "$out/ort.json"
fi

"$python" - "$out/wsunet.json" "$out/pytorch.json" "$out/ort.json" <<'PY'
import json, os, sys, platform, datetime
ours, theirs = (json.load(open(p)) for p in sys.argv[1:3])
ort = json.load(open(sys.argv[3]))[0] if os.path.exists(sys.argv[3]) else None
c = ours["config"]
print(f"{datetime.date.today()} {platform.machine()} wsunet on {ours['device']}, PyTorch on {theirs['device']}, {ours['threads']} threads; "
      f"{ours['parameters']:,} parameters, batch {c['batch']}, {c['model']['in_channels']}×{c['size'][0]}×{c['size'][1]}, "
      f"WS {'on' if c['standardize'] else 'off'}, median of {c['reps']} (torch {theirs.get('torch', '?')}"
      + (f", onnxruntime {ort['onnxruntime']})" if ort else ")"))
print(f"| phase | wsunet ms | PyTorch ms | ORT ms | wsunet img/s | PyTorch img/s | speed ratio | vs ORT | wsunet MiB | PyTorch MiB |")
print(f"|---|---|---|---|---|---|---|---|---|---|")
t = {r["phase"]: r for r in theirs["results"]}
for r in ours["results"]:
    o = t.get(r["phase"])
    if o is None:
        continue
    mib = lambda v: "-" if v is None else f"{v:.0f}"
    e = ort if r["phase"] == "inference" else None
    ort_ms, vs_ort = (f"{e['median_ms']:.1f}", f"{e['median_ms'] / r['median_ms']:.2f}×") if e else ("-", "-")
    print(f"| {r['phase']} | {r['median_ms']:.1f} | {o['median_ms']:.1f} | {ort_ms} | {r['images_per_s']:.2f} | "
          f"{o['images_per_s']:.2f} | {o['median_ms'] / r['median_ms']:.2f}× | {vs_ort} | "
          f"{mib(r['peak_rss_mib'])} | {mib(o['peak_rss_mib'])} |")
for r in ours["results"]:
    o = t.get(r["phase"], {})
    if r.get("parts") and o.get("parts"):
        theirs_parts = {p["part"]: p["median_ms"] for p in o["parts"]}
        print(f"\n{r['phase']} parts, ms (medians), wsunet / PyTorch: " + ", ".join(
            f"{p['part']} {p['median_ms']:.1f} / {theirs_parts.get(p['part'], float('nan')):.1f}" for p in r["parts"]))
PY
