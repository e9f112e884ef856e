"""The PyTorch twin of wsunet's WSResUNet, written from WSRESUNET.md.

Attribute names give exactly the state-dict keys the Rust model reads and
writes (``stem.conv.weight``, ``stage1.0.conv1.gn.bias``, ``head.weight`` ...),
so weights move between the two with ``load_state_dict(strict=True)`` and no
remapping.

Standardizations of WSConv2d (per output channel, over in/groups * k * k):
  seed   (w - mean) / (std_unbiased + eps)          eps 1e-5  (the seed, mmcv ConvWS2d)
  biased (w - mean) / sqrt(var_biased + eps)        eps 1e-6  (timm StdConv2d)
  scaled gain * (w - mean) / sqrt(var + eps) / sqrt(n), learnable gain  (timm ScaledStdConv2d)
  none   w: a plain nn.Conv2d

Norms after each convolution (``norm``):
  group  nn.GroupNorm(fit_groups(out, groups), out, eps=1e-5)   keys gn.*   (the seed)
  batch  nn.BatchNorm2d(out, eps=1e-5, momentum=0.1)            keys bn.*
  none   nothing; the convolution gets a bias                   conv.bias
  instance nn.InstanceNorm2d(out, eps=1e-5, affine=True)      keys gn.*   (nnU-Net's norm;
         wsunet runs it as a GroupNorm with one channel per group)
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_EPS = {"seed": 1e-5, "biased": 1e-6, "scaled": 1e-6, "none": 0.0}
NORMS = ("group", "batch", "none", "instance")


def fit_groups(channels: int, groups: int) -> int:
    g = min(groups, channels)
    while channels % g != 0:
        g -= 1
    return g


class WSConv2d(nn.Conv2d):
    def __init__(self, in_ch, out_ch, k, stride=1, padding=None, dilation=1, groups=1,
                 bias=False, standardization="seed", eps=None):
        super().__init__(in_ch, out_ch, k, stride=stride,
                         padding=k // 2 if padding is None else padding,
                         dilation=dilation, groups=groups, bias=bias)
        if standardization not in DEFAULT_EPS:
            raise ValueError(f"unknown standardization {standardization!r}")
        self.standardization = standardization
        self.eps = DEFAULT_EPS[standardization] if eps is None else eps
        if standardization == "scaled":
            self.gain = nn.Parameter(torch.ones(out_ch, 1, 1, 1))

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        if self.standardization == "none":
            return w
        flat = w.reshape(w.shape[0], -1)
        mean = flat.mean(dim=1, keepdim=True)
        if self.standardization == "seed":
            std = flat.std(dim=1, keepdim=True)  # unbiased, n - 1
            out = (flat - mean) / (std + self.eps)
        else:
            var = flat.var(dim=1, unbiased=False, keepdim=True)
            out = (flat - mean) / torch.sqrt(var + self.eps)
            if self.standardization == "scaled":
                out = out * self.gain.reshape(-1, 1) / math.sqrt(flat.shape[1])
        return out.reshape_as(w)

    def forward(self, x):
        return F.conv2d(x, self.standardized_weight(), self.bias, self.stride,
                        self.padding, self.dilation, self.groups)


class WSGNAct(nn.Module):
    def __init__(self, in_ch, out_ch, k=3, s=1, act=True, groups=32,
                 standardization="seed", eps=None, norm="group"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}")
        self.conv = WSConv2d(in_ch, out_ch, k, stride=s, bias=norm == "none",
                             standardization=standardization, eps=eps)
        if norm == "group":
            self.gn = nn.GroupNorm(fit_groups(out_ch, groups), out_ch, eps=1e-5, affine=True)
        elif norm == "batch":
            self.bn = nn.BatchNorm2d(out_ch, eps=1e-5, momentum=0.1)
        elif norm == "instance":
            self.gn = nn.InstanceNorm2d(out_ch, eps=1e-5, affine=True)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x):
        y = self.conv(x)
        if hasattr(self, "gn"):
            y = self.gn(y)
        elif hasattr(self, "bn"):
            y = self.bn(y)
        return self.act(y)


class WSResBlock(nn.Module):
    def __init__(self, in_ch, out_ch, s=1, groups=32, standardization="seed", eps=None, norm="group"):
        super().__init__()
        kw = dict(groups=groups, standardization=standardization, eps=eps, norm=norm)
        self.conv1 = WSGNAct(in_ch, out_ch, 3, s, act=True, **kw)
        self.conv2 = WSGNAct(out_ch, out_ch, 3, 1, act=False, **kw)
        self.proj = (WSGNAct(in_ch, out_ch, 1, s, act=False, **kw)
                     if s != 1 or in_ch != out_ch else None)

    def forward(self, x):
        shortcut = x if self.proj is None else self.proj(x)
        return F.silu(self.conv2(self.conv1(x)) + shortcut)


class Up(nn.Module):
    def __init__(self, in_ch, skip_ch, out_ch, groups=32, standardization="seed", eps=None, norm="group"):
        super().__init__()
        kw = dict(groups=groups, standardization=standardization, eps=eps, norm=norm)
        self.reduce = WSGNAct(in_ch, out_ch, 1, **kw)
        self.refine = WSGNAct(out_ch + skip_ch, out_ch, 3, **kw)

    def forward(self, x, skip):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = self.reduce(x)
        return self.refine(torch.cat([x, skip], dim=1))


class WSResUNet(nn.Module):
    def __init__(self, in_channels=3, num_classes=4, widths=(32, 64, 128, 256, 512),
                 depths=(1, 1, 1, 1), groups=32, standardization="seed", eps=None, norm="group"):
        super().__init__()
        w = list(widths)
        kw = dict(groups=groups, standardization=standardization, eps=eps, norm=norm)
        self.stem = WSGNAct(in_channels, w[0], 7, 2, **kw)

        def stage(i):
            blocks = [WSResBlock(w[i - 1], w[i], 2, **kw)]
            blocks += [WSResBlock(w[i], w[i], 1, **kw) for _ in range(depths[i - 1] - 1)]
            return nn.Sequential(*blocks)

        self.stage1, self.stage2, self.stage3, self.stage4 = (stage(i) for i in range(1, 5))
        self.bridge = nn.Sequential(WSGNAct(w[4], w[4], 3, **kw), WSGNAct(w[4], w[4], 3, **kw))
        self.dec4 = Up(w[4], w[3], w[3], **kw)
        self.dec3 = Up(w[3], w[2], w[2], **kw)
        self.dec2 = Up(w[2], w[1], w[1], **kw)
        self.dec1 = Up(w[1], w[0], w[0], **kw)
        self.head = nn.Conv2d(w[0], num_classes, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        s0 = self.stem(x)
        s1 = self.stage1(s0)
        s2 = self.stage2(s1)
        s3 = self.stage3(s2)
        s4 = self.stage4(s3)
        d = self.bridge(s4)
        d = self.dec4(d, s3)
        d = self.dec3(d, s2)
        d = self.dec2(d, s1)
        d = self.dec1(d, s0)
        return F.interpolate(self.head(d), size=(h, w), mode="bilinear", align_corners=False)


if __name__ == "__main__":
    m = WSResUNet(num_classes=4)
    print(sum(p.numel() for p in m.parameters()))
