"""Writes the golden fixtures that wsunet's parity tests read.

Each case is a pair of safetensors files in crates/wsunet/tests/fixtures/:
  <case>.weights.safetensors  the PyTorch state dict (the spec's keys), float32
                              (absent for the parameter-free resize cases)
  <case>.io.safetensors       input(s), the upstream gradient ``grad_output``,
                              the ``output``, and ``grad.<name>`` for the inputs
                              and every parameter; its metadata ``config`` is
                              the layer's constructor arguments as JSON.
The loss is sum(output * grad_output). Parameters and inputs are drawn in
float32 and the reference is computed in float64 from those exact values, so
the fixtures hold the true result rounded to float32.

Re-create with the pinned versions (the tests never need Python):
    python3 -m venv .venv && .venv/bin/pip install torch==2.15.0 timm==1.0.31 safetensors==0.8.0 numpy
    .venv/bin/python python/make_fixtures.py
"""

from __future__ import annotations

import json
import pathlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import wsunet_torch as W

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates" / "wsunet" / "tests" / "fixtures"
STDS = ("seed", "biased", "scaled")


def randomize(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Float32-representable parameters with non-trivial values: kernels with a
    per-channel offset (so centring matters), GN affine away from 1/0, gains
    away from 1."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if p.dim() == 4 and leaf == "weight":
                v = 0.3 * torch.randn(p.shape, generator=gen) + 0.2 * torch.randn(p.shape[0], 1, 1, 1, generator=gen)
            elif leaf == "gain":
                v = 1.0 + 0.3 * torch.randn(p.shape, generator=gen)
            elif leaf == "weight":
                v = 1.0 + 0.2 * torch.randn(p.shape, generator=gen)
            else:
                v = 0.2 * torch.randn(p.shape, generator=gen)
            p.copy_(v.float().double())


def f32(t: torch.Tensor) -> torch.Tensor:
    """Floats as float32; integer buffers (BatchNorm's num_batches_tracked) as they are."""
    t = t.detach()
    return (t.float() if t.is_floating_point() else t).contiguous()


def write_case(name: str, module: torch.nn.Module, config: dict, inputs: dict, seed: int,
               after=None) -> None:
    """One case; the module runs in training mode (BatchNorm uses and updates
    batch statistics). ``after(module, io, gen)`` may add tensors to io."""
    gen = torch.Generator().manual_seed(seed)
    module = module.double()
    randomize(module, gen)
    weights = {k: f32(v) for k, v in module.state_dict().items()}
    xs = {k: torch.randn(shape, generator=gen).float().double().requires_grad_(True) for k, shape in inputs.items()}
    out = module(*xs.values())
    grad_output = torch.randn(out.shape, generator=gen).float().double()
    (out * grad_output).sum().backward()

    io = {k: f32(v) for k, v in xs.items()}
    io["grad_output"] = f32(grad_output)
    io["output"] = f32(out)
    io.update({f"grad.{k}": f32(v.grad) for k, v in xs.items()})
    io.update({f"grad.{k}": f32(p.grad) for k, p in module.named_parameters()})
    if after is not None:
        after(module, io, gen)
    meta = {"config": json.dumps(config)}
    if weights:
        save_file(weights, OUT / f"{name}.weights.safetensors", metadata=meta)
    save_file(io, OUT / f"{name}.io.safetensors", metadata=meta)


def layer_cases() -> None:
    seed = 1
    convs = [(f"ws_conv2d_{s}", s, 4, 6, 3, 1, False, [2, 4, 9, 11]) for s in STDS]
    convs += [
        ("ws_conv2d_seed_k7s2", "seed", 3, 5, 7, 2, False, [2, 3, 13, 12]),
        ("ws_conv2d_scaled_k1s2_bias", "scaled", 6, 4, 1, 2, True, [1, 6, 7, 9]),
    ]
    for name, s, i, o, k, st, bias, shape in convs:
        cfg = dict(kind="ws_conv2d", in_channels=i, out_channels=o, kernel_size=k, stride=st, bias=bias, standardization=s)
        write_case(name, W.WSConv2d(i, o, k, st, bias=bias, standardization=s), cfg, {"input": shape}, seed)
        seed += 1
    for s in STDS:
        cfg = dict(kind="ws_gn_act", in_channels=6, out_channels=48, kernel_size=3, stride=2, act=True, groups=32, standardization=s)
        write_case(f"ws_gn_act_{s}", W.WSGNAct(6, 48, 3, 2, True, 32, s), cfg, {"input": [2, 6, 10, 9]}, seed)
        seed += 1
        cfg = dict(kind="ws_res_block", in_channels=8, out_channels=16, stride=2, groups=4, standardization=s)
        write_case(f"ws_res_block_{s}", W.WSResBlock(8, 16, 2, 4, s), cfg, {"input": [2, 8, 11, 7]}, seed)
        seed += 1
        cfg = dict(kind="up", in_channels=16, skip_channels=8, out_channels=8, groups=4, standardization=s)
        write_case(f"up_{s}", W.Up(16, 8, 8, 4, s), cfg, {"input": [2, 16, 5, 6], "skip": [2, 8, 11, 13]}, seed)
        seed += 1
    cfg = dict(kind="ws_res_block", in_channels=16, out_channels=16, stride=1, groups=4, standardization="seed")
    write_case("ws_res_block_seed_identity", W.WSResBlock(16, 16, 1, 4, "seed"), cfg, {"input": [2, 16, 6, 5]}, seed)


def model_cases() -> None:
    for seed, s in enumerate(STDS, start=100):
        cfg = dict(num_classes=3, in_channels=3, widths=[8, 16, 16, 32, 32], depths=[1, 2, 1, 1], groups=4, standardization=s)
        model = W.WSResUNet(**cfg)
        write_case(f"model_{s}", model, dict(kind="model", **cfg), {"input": [2, 3, 67, 45]}, seed)


def running_statistics(module, io, gen) -> None:
    """Two more training steps of the statistics (forwards on new batches),
    the running statistics after all three, and the evaluation-mode output
    on the first input."""
    with torch.no_grad():
        for step in (1, 2):
            x = torch.randn(io["input"].shape, generator=gen).float().double()
            io[f"step{step}.input"] = f32(x)
            module(x)
        for k, v in module.state_dict().items():
            if k.endswith(("running_mean", "running_var")):
                io[f"running.{k}"] = f32(v)
        module.eval()
        io["eval.output"] = f32(module(io["input"].double()))


# The study's variants beyond the seed's ws-gn: plain GroupNorm, WS+BN, plain
# BN, WS without a norm (biased convolutions) and WS+InstanceNorm (against
# PyTorch's own InstanceNorm2d, not a GroupNorm).
VARIANTS = {"gn": ("none", "group"), "ws_bn": ("seed", "batch"), "bn": ("none", "batch"), "ws_none": ("seed", "none"), "ws_in": ("seed", "instance")}


def variant_cases() -> None:
    for seed, (name, (s, norm)) in enumerate(VARIANTS.items(), start=110):
        cfg = dict(num_classes=3, in_channels=3, widths=[8, 16, 16, 32, 32], depths=[1, 2, 1, 1], groups=4, standardization=s, norm=norm)
        after = running_statistics if norm == "batch" else None
        write_case(f"model_{name}", W.WSResUNet(**cfg), dict(kind="model", **cfg), {"input": [2, 3, 67, 45]}, seed, after)
    # One value per channel is too few for BatchNorm, a few are enough: a
    # block on 3x1 maps, batch 1 (statistics from 3 values).
    cfg = dict(kind="ws_gn_act", in_channels=4, out_channels=6, kernel_size=3, stride=1, act=True, groups=32, standardization="seed", norm="batch")
    write_case("ws_gn_act_batch_tiny", W.WSGNAct(4, 6, 3, 1, True, 32, "seed", norm="batch"), cfg, {"input": [1, 4, 3, 1]}, 120, running_statistics)


class Resize(torch.nn.Module):
    def __init__(self, size):
        super().__init__()
        self.size = size

    def forward(self, x):
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)


def resize_cases() -> None:
    cases = [
        ("up", [2, 3, 5, 7], [11, 13]),
        ("down", [2, 3, 17, 19], [6, 5]),
        ("mixed", [1, 2, 8, 8], [3, 16]),
        ("to_one", [1, 2, 5, 4], [1, 1]),
        ("from_one", [1, 1, 1, 3], [4, 6]),
        ("large_ratio", [1, 1, 3, 3], [32, 32]),
    ]
    for seed, (name, shape, size) in enumerate(cases, start=200):
        cfg = dict(kind="resize", size=size)
        write_case(f"resize_{name}", Resize(size), cfg, {"input": shape}, seed)


def dice_loss(logits, target, ignore=255):
    """segmentation_models_pytorch's multiclass DiceLoss (smooth 0, eps 1e-7),
    with ignored pixels removed from both prediction and truth."""
    c = logits.shape[1]
    valid = (target != ignore).unsqueeze(1).to(logits.dtype)
    probs = logits.softmax(1) * valid
    safe = target.masked_fill(target == ignore, 0)
    truth = F.one_hot(safe, c).permute(0, 3, 1, 2).to(logits.dtype) * valid
    dims = (0, 2, 3)
    inter = (probs * truth).sum(dims)
    card = probs.sum(dims) + truth.sum(dims)
    dice = 2 * inter / card.clamp_min(1e-7)
    present = (truth.sum(dims) > 0).to(logits.dtype)
    return ((1 - dice) * present).mean()


def focal_loss(logits, target, weight, gamma=2.0, ignore=255):
    valid = target != ignore
    safe = target.masked_fill(~valid, 0)
    nll = -logits.log_softmax(1).gather(1, safe.unsqueeze(1)).squeeze(1)
    w = weight[safe] * valid
    return ((1 - torch.exp(-nll)) ** gamma * nll * w).sum() / w.sum()


def loss_cases() -> None:
    gen = torch.Generator().manual_seed(400)
    logits = (2 * torch.randn(2, 4, 9, 7, generator=gen)).float().double()
    target = torch.randint(0, 4, (2, 9, 7), generator=gen)
    target[torch.rand(2, 9, 7, generator=gen) < 0.15] = 255
    target[:, :, 0][target[:, :, 0] == 3] = 2  # class 3 rarer
    weight = torch.tensor([0.5, 1.0, 2.0, 1.5])
    io = {"logits": f32(logits), "target": target.to(torch.int64), "weight": f32(weight)}
    for name, fn in [
        ("ce", lambda x: F.cross_entropy(x, target, weight=weight, ignore_index=255)),
        ("ce_unweighted", lambda x: F.cross_entropy(x, target, ignore_index=255)),
        ("dice", lambda x: dice_loss(x, target)),
        ("focal", lambda x: focal_loss(x, target, weight)),
    ]:
        x = logits.clone().requires_grad_(True)
        loss = fn(x)
        loss.backward()
        io[f"loss.{name}"] = f32(loss.reshape(1))
        io[f"grad.{name}"] = f32(x.grad)
    save_file({k: v.contiguous() for k, v in io.items()}, OUT / "losses.io.safetensors", metadata={"config": json.dumps({"kind": "losses"})})


def timm_cases() -> None:
    """The `biased` and `scaled` layers against timm's own implementations."""
    from timm.layers import ScaledStdConv2d, StdConv2d

    gen = torch.Generator().manual_seed(300)
    x = torch.randn(2, 4, 9, 11, generator=gen)
    for name, layer, s in [
        ("timm_stdconv2d", StdConv2d(4, 6, 3, eps=1e-6), "biased"),
        ("timm_scaledstdconv2d", ScaledStdConv2d(4, 6, 3, bias=False, gamma=1.0, eps=1e-6), "scaled"),
    ]:
        layer = layer.double()
        randomize(layer, gen)
        with torch.no_grad():
            out = layer(x.double())
        cfg = dict(kind="ws_conv2d", in_channels=4, out_channels=6, kernel_size=3, stride=1, bias=False, standardization=s)
        meta = {"config": json.dumps(cfg), "timm": f"timm {__import__('timm').__version__} {type(layer).__name__}"}
        save_file({k: f32(v) for k, v in layer.state_dict().items()}, OUT / f"{name}.weights.safetensors", metadata=meta)
        save_file({"input": f32(x), "output": f32(out)}, OUT / f"{name}.io.safetensors", metadata=meta)


def pth_case() -> None:
    """model_seed's weights as a PyTorch checkpoint the way training scripts
    write them: wrapped in ``state_dict`` with DataParallel's ``module.``."""
    from safetensors.torch import load_file

    weights = load_file(OUT / "model_seed.weights.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in weights.items()}, "epoch": 3}, OUT / "model_seed_wrapped.pth")


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    OUT.mkdir(parents=True, exist_ok=True)
    layer_cases()
    model_cases()
    variant_cases()
    resize_cases()
    loss_cases()
    timm_cases()
    pth_case()
    files = sorted(OUT.glob("*.safetensors")) + sorted(OUT.glob("*.pth"))
    print(f"wrote {len(files)} files, {sum(f.stat().st_size for f in files) / 1024:.0f} KiB, torch {torch.__version__}")
