"""Speed of the PyTorch twin in eager mode, measured like `wsunet bench`.

Same phases, settings and JSON as `wsunet bench --json`, so `bench/compare.sh`
can put the two side by side:

  inference      the model in eval mode under no_grad (the twin standardizes
                 every kernel on every forward: eager PyTorch has no folding)
  train_forward  forward with autograd recording, in train mode
  train_step     forward, cross-entropy, backward, AdamW step, zero_grad

Each phase: `--warmup` untimed repetitions, then `--reps` timed ones; the
median is reported. Peak resident memory per phase comes from
/proc/self/status after resetting it (Linux). On CUDA every repetition ends
with torch.cuda.synchronize().

  python python/bench_torch.py --batch-size 2 --size 256 --threads 2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsunet_torch import WSConv2d, WSResUNet  # noqa: E402

PHASES = ["inference", "train_forward", "train_step"]


def parse_size(text: str) -> list[int]:
    for sep in "xX×":
        if sep in text:
            h, w = text.split(sep)
            return [int(h), int(w)]
    return [int(text), int(text)]


def reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_mib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="model config JSON (as for `wsunet info --model-config`)")
    ap.add_argument("--num-classes", type=int)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--size", type=parse_size, default=[256, 256])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-ws", action="store_true", help="plain convolutions instead of WS")
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: all cores)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    cfg = {"num_classes": 4, "in_channels": 3, "widths": [32, 64, 128, 256, 512],
           "depths": [1, 1, 1, 1], "groups": 32, "standardization": "seed", "eps": None}
    if args.config:
        with open(args.config) as f:
            cfg.update(json.load(f))
    if args.num_classes:
        cfg["num_classes"] = args.num_classes
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_ws:
        WSConv2d.forward = nn.Conv2d.forward  # the same network, plain convolutions
    phases = args.phases.split(",")
    for p in phases:
        if p not in PHASES:
            ap.error(f"unknown phase {p!r}; use {', '.join(PHASES)}")

    device = torch.device(args.device)
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    torch.manual_seed(0)
    model = WSResUNet(cfg["in_channels"], cfg["num_classes"], cfg["widths"], cfg["depths"],
                      cfg["groups"], cfg["standardization"], cfg["eps"]).to(device)
    params = sum(p.numel() for p in model.parameters())
    b, (h, w) = args.batch_size, args.size
    x = torch.randn(b, cfg["in_channels"], h, w, device=device)
    target = torch.randint(0, cfg["num_classes"], (b, h, w), device=device)
    decay = [p for n, p in model.named_parameters() if not n.endswith(("bias", "gain")) and ".gn." not in n]
    no_decay = [p for n, p in model.named_parameters() if n.endswith(("bias", "gain")) or ".gn." in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 1e-4},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-4, eps=1e-8)

    def inference():
        model.eval()
        with torch.no_grad():
            model(x)
        sync()

    def train_forward():
        model.train()
        model(x)
        sync()

    parts = []  # per train step: forward, loss, backward, optimizer (ms), as wsunet bench times them

    def train_step():
        model.train()
        t0 = time.perf_counter()
        y = model(x)
        sync()
        t1 = time.perf_counter()
        loss = F.cross_entropy(y, target)
        loss.item()
        t2 = time.perf_counter()
        loss.backward()
        sync()
        t3 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        t4 = time.perf_counter()
        parts.append([(b - a) * 1e3 for a, b in [(t0, t1), (t1, t2), (t2, t3), (t3, t4)]])

    steps = {"inference": inference, "train_forward": train_forward, "train_step": train_step}
    results = []
    for phase in PHASES:
        if phase not in phases:
            continue
        if not args.json:
            print(f"measuring {phase} …", file=sys.stderr)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        reset_peak()
        for _ in range(args.warmup):
            steps[phase]()
        times = []
        for _ in range(args.reps):
            start = time.perf_counter()
            steps[phase]()
            times.append((time.perf_counter() - start) * 1e3)
        median = statistics.median(times)
        result = {"phase": phase, "median_ms": median, "min_ms": min(times), "max_ms": max(times),
                  "images_per_s": b / (median / 1e3), "peak_rss_mib": peak_mib()}
        if cuda:
            result["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        if phase == "train_step":
            timed = parts[args.warmup:]
            result["parts"] = [{"part": name, "median_ms": statistics.median(p[i] for p in timed)}
                               for i, name in enumerate(["forward", "loss", "backward", "optimizer"])]
        results.append(result)

    report = {
        "tool": "pytorch",
        "device": args.device,
        "threads": torch.get_num_threads(),
        "parameters": params,
        "torch": torch.__version__,
        "config": {"model": cfg, "batch": b, "size": [h, w], "warmup": args.warmup,
                   "reps": args.reps, "standardize": not args.no_ws, "phases": phases},
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"pytorch {torch.__version__} on {args.device} ({torch.get_num_threads()} threads): "
              f"{params} parameters, batch {b}, {cfg['in_channels']}×{h}×{w}, "
              f"standardization {'on' if not args.no_ws else 'off'}")
        print(f"{'phase':<14} {'median ms':>10} {'min ms':>10} {'max ms':>10} {'images/s':>10} {'peak MiB':>10}")
        for r in results:
            pk = f"{r['peak_rss_mib']:.0f}" if r["peak_rss_mib"] is not None else "-"
            print(f"{r['phase']:<14} {r['median_ms']:>10.1f} {r['min_ms']:>10.1f} {r['max_ms']:>10.1f} "
                  f"{r['images_per_s']:>10.2f} {pk:>10}")


if __name__ == "__main__":
    main()
