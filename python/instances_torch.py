"""The PyTorch reference for wsunet's instance segmentation: the same network
(the twin in ``wsunet_torch.py``), the same data, target, settings and object
extraction, trained and scored in PyTorch, so that AP50 can be compared side by
side with ``wsunet train --task instances``.

What is the same as the wsunet run given with ``--run``: the dataset folder (a
``train/`` + ``val/`` split of instance label masks, e.g. ``hela-instances`` of
``real_data.py``), the model config, crop, batch size, steps, AdamW with its
rate, weight decay, warmup and cosine decay, the CE + Dice loss, the input
normalization, the three-class target with the run's boundary width (wsunet's
rule: object pixels within that chessboard distance of another label, the image
edge excluded), flips and 90° turns, validation images predicted in tiles of
the crop blended with Gaussian weights (overlap 0.25), and the objects grown by
wsunet's own extraction (``wsunet.instances_from_probs``) with its thresholds
chosen on the validation images over the same grid, scored by
``wsunet.object_scores``. What differs: PyTorch's initialization and random
streams, and the photometric and scale augmentation (brightness, contrast,
gamma, noise and scale are drawn here with numpy in the same ranges).

    python python/instances_torch.py --run runs/hela-inst --data real/hela-instances --out torch-hela.json
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import wsunet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsunet_torch import WSResUNet  # noqa: E402

INTERIOR = [0.3, 0.4, 0.5, 0.6, 0.7]
REGION = [0.4, 0.5, 0.6]


def read_split(root, split):
    images = sorted(glob.glob(os.path.join(root, split, "images", "*.png")))
    out = []
    for path in images:
        image = np.array(Image.open(path)).astype(np.float32) / (65535.0 if "16" in Image.open(path).mode else 255.0)
        if image.ndim == 2:
            image = image[None]
        else:
            image = image.transpose(2, 0, 1)
        labels = np.array(Image.open(os.path.join(root, split, "masks", os.path.basename(path)))).astype(np.int64)
        out.append((image, labels))
    return out


def three_class_target(labels, boundary):
    """wsunet's rule: an object pixel is boundary when a pixel within
    chessboard distance ``boundary`` inside the image has another label."""
    h, w = labels.shape
    edge = np.zeros((h, w), bool)
    for dy in range(-boundary, boundary + 1):
        for dx in range(-boundary, boundary + 1):
            if dy == 0 and dx == 0:
                continue
            ys, yd = (slice(max(dy, 0), h + min(dy, 0)), slice(max(-dy, 0), h + min(-dy, 0)))
            xs, xd = (slice(max(dx, 0), w + min(dx, 0)), slice(max(-dx, 0), w + min(-dx, 0)))
            edge[yd, xd] |= labels[ys, xs] != labels[yd, xd]
    target = np.zeros((h, w), np.int64)
    target[labels > 0] = 1
    target[(labels > 0) & edge] = 2
    return target


def augment(rng, image, target, crop, a):
    c, h, w = image.shape
    scale = rng.uniform(*a["scale"])
    ch, cw = [max(1, int(round(s / scale))) for s in crop]
    y = rng.integers(0, max(h - ch, 0) + 1)
    x = rng.integers(0, max(w - cw, 0) + 1)
    img = torch.from_numpy(image[:, y:y + ch, x:x + cw].copy())[None]
    tgt = torch.from_numpy(target[y:y + ch, x:x + cw].copy())[None, None].float()
    img = F.interpolate(img, size=tuple(crop), mode="bilinear", align_corners=False)[0]
    tgt = F.interpolate(tgt, size=tuple(crop), mode="nearest")[0, 0].long()
    if a["hflip"] and rng.random() < 0.5:
        img, tgt = img.flip(-1), tgt.flip(-1)
    if a["vflip"] and rng.random() < 0.5:
        img, tgt = img.flip(-2), tgt.flip(-2)
    if a["rot90"]:
        k = int(rng.integers(0, 4))
        img, tgt = torch.rot90(img, k, (-2, -1)), torch.rot90(tgt, k, (-2, -1))
    img = img + rng.uniform(-a["brightness"], a["brightness"])
    mean = img.mean()
    img = (img - mean) * (1 + rng.uniform(-a["contrast"], a["contrast"])) + mean
    img = img.clamp(0, 1) ** math.exp(rng.uniform(-a["gamma"], a["gamma"]))
    img = img + torch.from_numpy(rng.normal(0, a["noise"], img.shape).astype(np.float32))
    return img.contiguous(), tgt.contiguous()


def ce_dice(logits, target):
    ce = F.cross_entropy(logits, target)
    probs = logits.softmax(1)
    truth = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
    inter = (probs * truth).sum((0, 2, 3))
    card = probs.sum((0, 2, 3)) + truth.sum((0, 2, 3))
    present = (truth.sum((0, 2, 3)) > 0).float()
    return ce + ((1 - 2 * inter / card.clamp_min(1e-7)) * present).mean()


def gaussian(tile):
    sigma = tile / 8
    g = np.exp(-0.5 * ((np.arange(tile) + 0.5 - tile / 2) / sigma) ** 2)
    return np.outer(g, g).astype(np.float32)


def starts(length, tile, stride):
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / stride) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


@torch.no_grad()
def predict(model, image, mean, std, tile, overlap=0.25):
    x = (torch.from_numpy(image) - mean[:, None, None]) / std[:, None, None]
    c, h, w = x.shape
    th, tw = min(tile, h), min(tile, w)
    stride = max(1, int(tile * (1 - overlap)))
    weight = torch.from_numpy(gaussian(tile))
    acc = torch.zeros(3, h, w)
    norm = torch.zeros(h, w)
    for y in starts(h, th, stride):
        for x0 in starts(w, tw, stride):
            p = model(x[None, :, y:y + th, x0:x0 + tw]).softmax(1)[0]
            wgt = weight[(tile - th) // 2:(tile - th) // 2 + th, (tile - tw) // 2:(tile - tw) // 2 + tw]
            acc[:, y:y + th, x0:x0 + tw] += p * wgt
            norm[y:y + th, x0:x0 + tw] += wgt
    return (acc / norm).numpy()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="the wsunet run directory to mirror")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", help="the dataset folder (default: the run's, relative to here)")
    p.add_argument("--out", help="write the scores here as JSON")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    config = json.load(open(os.path.join(a.run, "config.json")))
    card = json.load(open(os.path.join(a.run, "model.json")))
    boundary = card["instances"]["boundary"]
    min_area = card["instances"]["extraction"]["min_area"]
    data = a.data or config["data"]
    train = [(img, three_class_target(lab, boundary)) for img, lab in read_split(data, "train")]
    val = read_split(data, "val")
    m = config["model"]
    model = WSResUNet(m["in_channels"], 3, m["widths"], m["depths"], m["groups"], m["standardization"], m["eps"],
                      m["norm"])
    mean = torch.tensor(card["normalize"]["mean"])
    std = torch.tensor(card["normalize"]["std"])
    crop, batch, epochs = config["crop"], config["batch_size"], config["epochs"]
    per_epoch = math.ceil(len(train) / batch)
    total = epochs * per_epoch
    warmup = max(1, round(config["warmup_epochs"] * per_epoch))
    opt = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])

    def lr_at(step):
        if step < warmup:
            return config["lr"] * (step + 1) / warmup
        t = min((step - warmup) / max(total - warmup, 1), 1.0)
        return config["min_lr"] + 0.5 * (config["lr"] - config["min_lr"]) * (1 + math.cos(math.pi * t))

    started = time.time()
    step = 0
    model.train()
    for epoch in range(epochs):
        order = rng.permutation(len(train))
        for b in range(per_epoch):
            items = [augment(rng, *train[i], crop, config["augment"]) for i in order[b * batch:(b + 1) * batch]]
            x = (torch.stack([i for i, _ in items]) - mean[None, :, None, None]) / std[None, :, None, None]
            t = torch.stack([t for _, t in items])
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = ce_dice(model(x), t)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        if (epoch + 1) % max(1, epochs // 10) == 0:
            print(f"epoch {epoch + 1}/{epochs} loss {loss.item():.4f} {time.time() - started:.0f} s", flush=True)
    train_seconds = time.time() - started
    model.eval()
    probs = [predict(model, img, mean, std, max(crop)) for img, _ in val]
    truths = [lab for _, lab in val]
    best = None
    for it in INTERIOR:
        for rt in REGION:
            preds = [wsunet.instances_from_probs(p, interior_threshold=it, region_threshold=rt, min_area=min_area)
                     for p in probs]
            s = wsunet.object_scores(truths, preds)
            if best is None or s["ap50"] > best[0]["ap50"]:
                best = (s, it, rt)
    s, it, rt = best
    result = {"ap50": s["ap50"], "ap": s["ap"], "f1_50": s["f1_50"], "pq": s["pq"], "counts": s["counts"],
              "interior_threshold": it, "region_threshold": rt, "min_area": min_area, "steps": total,
              "train_seconds": train_seconds, "torch": torch.__version__, "threads": a.threads}
    print(json.dumps(result))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
