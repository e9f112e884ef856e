"""Checks wsunet's ONNX export with ONNX Runtime and the PyTorch twin, and times it.

`check` (the default) proves, for a wsunet model, that the file written by
`wsunet export MODEL --to model.onnx` is valid ONNX and computes wsunet's logits:

  1. `wsunet export` writes model.onnx (with --normalize-input and --argmax) and
     model.safetensors (the unfolded state dict, for the twin);
  2. `onnx.checker.check_model(full_check=True)` (also runs shape inference);
  3. seeded random images in [0, 1] at two sizes (77×101, then 160×224) go
     through `wsunet predict --logits` (.npy input), ONNX Runtime (CPU) and
     the PyTorch twin built from the file's own metadata (`wsunet.model`,
     `wsunet.normalize`); the max relative differences are printed, and the
     ONNX `labels` output is compared with the arg-max of its logits;
  4. the twin is exported with `torch.onnx.export` for a side-by-side
     comparison (file size, node count, operators, and its logits under ORT).

`bench` times ONNX Runtime CPU inference of an .onnx file at --batch (1 by
default) for each of --sizes, the median of --reps runs after --warmup, with
--threads intra-op threads (the same setting as `wsunet bench --threads` and
python/bench_torch.py --threads); --json prints one JSON list of results.
bench/compare.sh runs it on `wsunet bench --onnx`'s file.

Pinned versions (PyPI, Python 3.11; torch from PyPI also pulls its CUDA
packages, unused here):
    python3 -m venv .venv && .venv/bin/pip install torch==2.15.0 onnx==1.23.2 \\
        onnxruntime==1.31.1 onnxscript==0.7.2 safetensors==0.8.0 numpy==2.4.6
    .venv/bin/python python/check_onnx.py check --wsunet target/release/wsunet --model runs/run-001
    .venv/bin/python python/check_onnx.py bench model.onnx --sizes 256,512 --threads 2
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsunet_torch import WSResUNet  # noqa: E402

SIZES = [(1, 77, 101), (2, 160, 224)]


def rel(a: np.ndarray, b: np.ndarray) -> float:
    """max|a − b| / max|b|, the measure the Rust tests use."""
    return float(np.abs(a - b).max() / np.abs(b).max())


def session(path: pathlib.Path, threads: int | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def describe(path: pathlib.Path) -> str:
    model = onnx.load(str(path))
    ops = collections.Counter(n.op_type for n in model.graph.node)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    listed = ", ".join(f"{op} {n}" for op, n in sorted(ops.items()))
    return (
        f"{path.stat().st_size / 1e6:.2f} MB, opset {opset}, {len(model.graph.node)} nodes, "
        f"{len(model.graph.initializer)} initializers: {listed}"
    )


def run(cmd: list[str]) -> str:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return out.strip()


def check(args: argparse.Namespace) -> None:
    work = pathlib.Path(tempfile.mkdtemp(prefix="check_onnx."))
    onnx_path, st_path = work / "model.onnx", work / "model.safetensors"
    print(run([args.wsunet, "export", "--model", args.model, "--out", str(onnx_path),
               "--normalize-input", "--argmax"]))
    print(run([args.wsunet, "export", "--model", args.model, "--out", str(st_path)]))

    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    print(f"onnx.checker (full_check): ok; metadata keys: {', '.join(sorted(meta))}")
    print(f"wsunet ONNX: {describe(onnx_path)}")

    config = json.loads(meta["wsunet.model"])
    norm = json.loads(meta["wsunet.normalize"])
    twin = WSResUNet(
        in_channels=config["in_channels"], num_classes=config["num_classes"],
        widths=config["widths"], depths=config["depths"], groups=config["groups"],
        standardization=config["standardization"], eps=config.get("eps"),
    ).eval()
    twin.load_state_dict(load_file(str(st_path)), strict=True)
    mean = torch.tensor(norm["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(norm["std"]).view(1, -1, 1, 1)

    sess = session(onnx_path)
    rng = np.random.default_rng(args.seed)
    images = []
    worst = collections.defaultdict(float)
    for n, h, w in SIZES:
        x = rng.random((n, config["in_channels"], h, w), dtype=np.float32)
        images.append(x)
        # wsunet predict takes one [C, H, W] .npy per image, values in [0, 1].
        folder = work / f"in_{h}x{w}"
        folder.mkdir()
        for i in range(n):
            np.save(folder / f"img{i}.npy", x[i])
        pred = work / f"pred_{h}x{w}"
        run([args.wsunet, "predict", "--model", args.model, "--input", str(folder),
             "--out", str(pred), "--logits", "--tile", str(max(h, w))])
        ours = np.stack([np.load(pred / f"img{i}_logits.npy") for i in range(n)])
        logits, labels = sess.run(["logits", "labels"], {"image": x})
        with torch.no_grad():
            theirs = twin((torch.from_numpy(x) - mean) / std).numpy()
        rows = {
            "ORT vs wsunet": rel(logits, ours),
            "ORT vs twin": rel(logits, theirs),
            "wsunet vs twin": rel(ours, theirs),
        }
        same_labels = float((labels == logits.argmax(1)).mean())
        print(f"{n}×{config['in_channels']}×{h}×{w}: " + ", ".join(
            f"{k} {v:.2e}" for k, v in rows.items()) + f"; labels = argmax(logits) on {same_labels:.2%} of pixels")
        for k, v in rows.items():
            worst[k] = max(worst[k], v)
    ok = all(v < 1e-4 for v in worst.values())
    print("max relative difference: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items())
          + (" — within 1e-4" if ok else " — ABOVE 1e-4"))

    # The twin through PyTorch's own exporters, for comparison.
    example = (torch.from_numpy(images[0]) - mean) / std
    for exporter, path in export_twin(twin, example, work):
        print(f"torch.onnx.export ({exporter}): {describe(path)}")
        tsess = session(path)
        name = tsess.get_inputs()[0].name
        diffs = []
        for x in images:
            normalized = (torch.from_numpy(x) - mean) / std
            with torch.no_grad():
                theirs = twin(normalized).numpy()
            (out,) = tsess.run(None, {name: normalized.numpy()})
            diffs.append(rel(out, theirs))
        print(f"  under ORT vs the twin, both sizes: max relative difference {max(diffs):.2e}")
    if not ok:
        sys.exit(1)


def export_twin(twin: torch.nn.Module, example: torch.Tensor, work: pathlib.Path):
    """The twin through torch.onnx.export with dynamic batch, height and width:
    the TorchScript exporter at opset 17 (deprecated since torch 2.9, still
    there in 2.15) and the default dynamo exporter. Yields (label, path) for
    each that succeeds."""
    path = work / "twin_torchscript.onnx"
    try:
        torch.onnx.export(
            twin, (example,), str(path), dynamo=False, opset_version=17,
            input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                          "logits": {0: "batch", 2: "height", 3: "width"}},
        )
        yield "TorchScript exporter, dynamo=False, opset 17", path
    except Exception as e:  # noqa: BLE001 - report and go on
        print(f"TorchScript exporter failed: {type(e).__name__}: {str(e)[:200]}")
    path = work / "twin_dynamo.onnx"
    try:
        batch = torch.export.Dim("batch", min=1, max=64)
        height = torch.export.Dim("height", min=32, max=4096)
        width = torch.export.Dim("width", min=32, max=4096)
        program = torch.onnx.export(
            twin, (example,), dynamo=True, verbose=False, input_names=["image"], output_names=["logits"],
            dynamic_shapes=({0: batch, 2: height, 3: width},),
        )
        program.save(str(path))
        yield "dynamo exporter, the default", path
    except Exception as e:  # noqa: BLE001 - report and go on
        print(f"dynamo exporter failed: {type(e).__name__}: {str(e)[:200]}")


def bench(args: argparse.Namespace) -> None:
    sess = session(pathlib.Path(args.file), args.threads)
    inp = sess.get_inputs()[0]
    channels = inp.shape[1]
    rows = []
    for h, w in args.sizes:
        shape = (args.batch, channels, h, w)
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        for _ in range(args.warmup):
            sess.run(None, {inp.name: x})
        times = []
        for _ in range(args.reps):
            t = time.perf_counter()
            sess.run(None, {inp.name: x})
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        rows.append({"batch": args.batch, "size": [h, w], "median_ms": med * 1e3, "min_ms": min(times) * 1e3,
                     "max_ms": max(times) * 1e3, "images_per_s": args.batch / med,
                     "onnxruntime": ort.__version__, "threads": args.threads})
        if not args.json:
            print(f"ORT {ort.__version__} CPU, {args.threads} thread(s), {'×'.join(map(str, shape))}: "
                  f"median {med * 1000:.1f} ms (min {min(times) * 1000:.1f} ms, {args.reps} reps)")
    if args.json:
        print(json.dumps(rows))


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """`256,512x384`: squares or HxW."""
    sizes = []
    for part in text.split(","):
        h, _, w = part.partition("x")
        sizes.append((int(h), int(w or h)))
    return sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="ORT and the twin against wsunet")
    c.add_argument("--wsunet", default="target/release/wsunet", help="the wsunet binary")
    c.add_argument("--model", required=True, help="a wsunet model (run directory or .bpk)")
    c.add_argument("--seed", type=int, default=0)
    b = sub.add_parser("bench", help="ORT CPU inference time")
    b.add_argument("file", help="an .onnx file")
    b.add_argument("--sizes", type=parse_sizes, default=[(256, 256), (512, 512)], help="256,512x384: squares or HxW")
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--warmup", type=int, default=3)
    b.add_argument("--reps", type=int, default=10)
    b.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.cmd == "check":
        check(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
