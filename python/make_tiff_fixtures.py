"""Writes small TIFF fixtures with tifffile (an independent writer) for the
Rust reader's tests (crates/wsunet/tests/tiff_formats.rs): layouts wsunet's
own writer never produces.

    python3 -m venv .venv && .venv/bin/pip install tifffile==2026.3.3 imagecodecs==2026.3.6 numpy
    .venv/bin/python python/make_tiff_fixtures.py

Every fixture's pixels come from `pattern`, which the tests recompute, so a
test checks values, not only that a file opens.
"""

import json
import pathlib

import numpy as np
import tifffile

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/wsunet/tests/fixtures/tiff"


def pattern(h, w, c, dtype):
    """(x * 7 + y * 13 + c * 50) mod 256, scaled to the dtype."""
    y, x, ch = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    v = (x * 7 + y * 13 + ch * 50) % 256
    if dtype == np.uint8:
        return v.astype(np.uint8)
    if dtype == np.uint16:
        return (v * 257).astype(np.uint16)
    return (v / 255.0).astype(dtype)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    cases = {}

    # OME-TIFF pyramid: level 0 with two SubIFD levels (2× and 4× smaller),
    # physical pixel size 0.25 µm, uint8 RGB, tiles of 32, Deflate.
    base = pattern(96, 128, 3, np.uint8)
    path = OUT / "ome_pyramid.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tif:
        opts = dict(tile=(32, 32), compression="zlib", photometric="rgb")
        tif.write(base, subifds=2, metadata={"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25}, **opts)
        tif.write(base[::2, ::2], subfiletype=1, **opts)
        tif.write(base[::4, ::4], subfiletype=1, **opts)
    cases["ome_pyramid.ome.tif"] = dict(levels=[[96, 128], [48, 64], [24, 32]], channels=3, dtype="u8", pixel_um=0.25)

    # Planar (separate) 4-band uint16, LZW with horizontal predictor, tiled.
    path = OUT / "planar_u16_lzw.tif"
    tifffile.imwrite(path, pattern(70, 50, 4, np.uint16).transpose(2, 0, 1), planarconfig="separate",
                     photometric="minisblack", tile=(32, 32), compression="lzw", predictor=True)
    cases["planar_u16_lzw.tif"] = dict(levels=[[70, 50]], channels=4, dtype="u16")

    # Stripped float32 gray, ZSTD.
    path = OUT / "strips_f32_zstd.tif"
    tifffile.imwrite(path, pattern(45, 60, 1, np.float32)[..., 0], rowsperstrip=8, compression="zstd")
    cases["strips_f32_zstd.tif"] = dict(levels=[[45, 60]], channels=1, dtype="f32")

    # RGBA, chunky, PackBits: alpha dropped.
    path = OUT / "rgba_packbits.tif"
    tifffile.imwrite(path, pattern(40, 33, 4, np.uint8), photometric="rgb", extrasamples=["unassalpha"],
                     compression="packbits", rowsperstrip=16)
    cases["rgba_packbits.tif"] = dict(levels=[[40, 33]], channels=3, dtype="u8")

    # Big-endian BigTIFF, multiband uint8, tiled, Deflate.
    path = OUT / "bigendian_bigtiff.tif"
    tifffile.imwrite(path, pattern(50, 40, 5, np.uint8), bigtiff=True, byteorder=">",
                     photometric="minisblack", planarconfig="contig", tile=(16, 16), compression="zlib")
    cases["bigendian_bigtiff.tif"] = dict(levels=[[50, 40]], channels=5, dtype="u8")

    # JPEG tiles of RGB pixels, stored three ways: YCbCr 4:2:0 (how slide
    # scanners and libtiff store them), YCbCr 4:4:4, and RGB (photometric 2).
    y, x, c = np.meshgrid(np.arange(64), np.arange(64), np.arange(3), indexing="ij")
    smooth = (60 + x + y + 30 * c).astype(np.uint8)
    jpeg = dict(photometric="rgb", tile=(32, 32), compression="jpeg")
    tifffile.imwrite(OUT / "jpeg_ycbcr420.tif", smooth, compressionargs={"level": 95}, **jpeg)
    tifffile.imwrite(OUT / "jpeg_ycbcr444.tif", smooth, compressionargs={"level": 95}, subsampling=(1, 1), **jpeg)
    tifffile.imwrite(OUT / "jpeg_rgb.tif", smooth,
                     compressionargs={"level": 95, "outcolorspace": "rgb"}, **jpeg)
    for name, photometric in [("jpeg_ycbcr420.tif", 6), ("jpeg_ycbcr444.tif", 6), ("jpeg_rgb.tif", 2)]:
        assert tifffile.TiffFile(OUT / name).pages[0].photometric == photometric, name
        cases[name] = dict(levels=[[64, 64]], channels=3, dtype="u8", lossy=True, smooth=True)

    # Unsupported: signed 16-bit, and a JPEG 2000 tile compression code.
    tifffile.imwrite(OUT / "int16.tif", pattern(20, 20, 1, np.uint16)[..., 0].astype(np.int16))
    cases["int16.tif"] = dict(error="16-bit signed integers")

    (OUT / "cases.json").write_text(json.dumps(cases, indent=1, sort_keys=True) + "\n")
    for name in sorted(cases):
        print(name, (OUT / name).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
