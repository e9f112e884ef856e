"""The wsunet Python package, tested from Python (CI: .ci/run builds it with
maturin into a virtual environment and runs these with pytest).

A tiny model is trained once per session on a little of the built-in shapes
data; everything else uses it.
"""

import os
import threading
import time

import numpy as np
import pytest

import wsunet

TINY = dict(
    epochs=1,
    batch_size=2,
    shapes={"train": 8, "val": 4, "size": 48, "seed": 0},
    model={"widths": [4, 8, 8, 8, 8], "groups": 2},
)


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    seen = []
    scores = wsunet.train(out=str(out), progress=seen.append, **TINY)
    assert scores["epochs"] == 1
    assert 0.0 <= scores["miou"] <= 1.0
    assert [c["name"] for c in scores["classes"]] == ["background", "circle", "rectangle", "triangle"]
    assert len(seen) == 1 and seen[0]["epoch"] == 1 and "miou" in seen[0]
    # The keywords given stay; the rest is planned, each with its reason.
    plan = {c["field"]: c for c in scores["plan"]}
    assert plan["epochs"]["reason"] == "given"
    assert plan["val_every"]["value"] == "1" and plan["val_every"]["reason"] != "given"
    return out


@pytest.fixture(scope="session")
def model(run):
    return wsunet.load(run)


def image(h=70, w=90, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_info_is_the_card(model, run):
    info = model.info
    assert info["model"]["widths"] == [4, 8, 8, 8, 8]
    assert info["crop"] == [48, 48]
    assert len(info["weights_digest"]) == 64
    assert "wsunet.Model(" in repr(model)


def test_predict_labels_probs_logits_in_both_layouts(model):
    x = image()
    labels = model.predict(x)
    assert labels.shape == (70, 90) and labels.dtype == np.uint8
    assert labels.max() < 4
    probs = model.predict(x, output="probs")
    assert probs.shape == (70, 90, 4) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    assert (probs.argmax(axis=-1) == labels).mean() > 0.999
    # CHW floats scaled as 8-bit images are: the same prediction.
    chw = np.ascontiguousarray(x.transpose(2, 0, 1)).astype(np.float32) / 255.0
    probs_chw = model.predict(chw, output="probs", channel_axis=0)
    assert probs_chw.shape == (4, 70, 90)
    np.testing.assert_allclose(probs_chw, probs.transpose(2, 0, 1), atol=1e-6)
    # 16-bit: value / 65535.
    x16 = x.astype(np.uint16) * 257
    np.testing.assert_allclose(model.predict(x16, output="probs"), probs, atol=1e-6)
    logits = model.predict(x, output="logits", tta="flip", tile=48, overlap=0.5)
    assert logits.shape == (70, 90, 4) and np.isfinite(logits).all()
    maps = model.predict(x, output="uncertainty", tta="flip", tile=48)
    assert maps.shape == (70, 90, 2) and maps.dtype == np.float32
    assert (maps >= 0).all() and (maps <= 1).all()
    flips = model.predict(x, output="probs", tta="flip", tile=48)
    entropy = -(flips * np.log(np.maximum(flips, 1e-30))).sum(axis=-1) / np.log(4)
    np.testing.assert_allclose(maps[..., 0], entropy, atol=1e-5)
    # A non-contiguous view is read in place, the same as its copy.
    view = x[::-1, :, :]
    np.testing.assert_array_equal(model.predict(view), model.predict(np.ascontiguousarray(view)))


def test_bad_arguments_are_value_errors_with_the_fix(model):
    with pytest.raises(ValueError, match="1 channels but the model expects 3"):
        model.predict(np.zeros((40, 40), dtype=np.uint8))
    with pytest.raises(ValueError, match="dtype is float64"):
        model.predict(np.zeros((40, 40, 3)))
    with pytest.raises(ValueError, match='output "masks"'):
        model.predict(image(), output="masks")
    with pytest.raises(ValueError, match="use tta flip"):
        model.predict(image(), output="uncertainty")
    with pytest.raises(ValueError, match="tile size 8 is below the model's minimum 32"):
        model.predict(image(), tile=8)
    with pytest.raises(ValueError, match="4 dimensions"):
        model.predict(np.zeros((1, 40, 40, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="non-finite"):
        bad = np.zeros((40, 40, 3), dtype=np.float32)
        bad[3, 4, 1] = np.nan
        model.predict(bad)
    with pytest.raises(ValueError, match="empty"):
        model.predict(np.zeros((0, 40, 3), dtype=np.uint8))
    for dtype in [np.int64, np.bool_, np.complex64]:
        with pytest.raises(ValueError, match="dtype"):
            model.predict(np.zeros((40, 40, 3), dtype=dtype))
    with pytest.raises(ValueError, match="epochs is 0"):
        wsunet.train(out="never", **{**TINY, "epochs": 0})
    with pytest.raises(ValueError, match="not a duration"):
        wsunet.train(out="never", time="abc")
    with pytest.raises(ValueError, match="unknown field `epochz`"):
        wsunet.train(out="never", epochz=3)
    with pytest.raises(FileNotFoundError):
        wsunet.load("no/such/run")
    with pytest.raises(FileNotFoundError):
        model.predict_file("no/such/image.png", "out")


def test_a_file_from_another_tool_is_a_wsunet_error(run, tmp_path):
    fake = tmp_path / "model.bpk"
    fake.write_bytes(b"PK\x03\x04 a pytorch zip, not a model")
    (tmp_path / "model.json").write_text((run / "model.json").read_text())
    with pytest.raises(wsunet.WsunetError, match="model.bpk"):
        wsunet.load(fake)
    assert issubclass(wsunet.WsunetError, Exception)


def test_an_unreadable_file_is_a_wsunet_error(model, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(wsunet.WsunetError, match="bad.png"):
        model.predict_file(bad, tmp_path / "out")


def test_predict_file_writes_what_the_cli_writes(model, tmp_path):
    from PIL import Image

    x = image(64, 80, seed=3)
    src = tmp_path / "scene.png"
    Image.fromarray(x).save(src)
    written = model.predict_file(src, tmp_path / "pred", probs=True, overlay=0.5)
    assert sorted(written) == ["mask", "overlay", "probs"]
    mask = np.array(Image.open(written["mask"]))
    np.testing.assert_array_equal(mask, model.predict(x))
    probs = np.load(written["probs"])
    assert probs.shape == (4, 64, 80)


def cli_binary():
    """The `wsunet` binary the tests compare against (CI builds it first)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    cli = os.environ.get("WSUNET_BIN", os.path.join(root, "target", "release", "wsunet"))
    if not os.path.exists(cli):
        message = f"no wsunet binary at {cli} (build it: cargo build --release)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return cli


def test_predict_equals_the_command_line_exactly(model, run, tmp_path):
    """The package and `wsunet predict` give the same mask, pixel for pixel."""
    import subprocess

    from PIL import Image

    x = image(100, 130, seed=11)
    src = tmp_path / "in" / "scene.png"
    src.parent.mkdir()
    Image.fromarray(x).save(src)
    out = tmp_path / "cli"
    subprocess.run([cli_binary(), "predict", "--model", str(run), "--input", str(src), "--out", str(out), "--tile", "64"],
                   check=True, capture_output=True)
    np.testing.assert_array_equal(np.array(Image.open(out / "scene.png")), model.predict(x, tile=64))


def test_cli_and_python_write_the_same_files_byte_for_byte(model, run, tmp_path):
    """`predict_file` and `wsunet predict` run the same library job: for a
    PNG and a streamed TIFF input, with every output asked for, the two
    folders hold the same files with the same bytes (predict.json too)."""
    import subprocess

    from PIL import Image

    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(image(100, 130, seed=5)).save(inputs / "a.png")
    Image.fromarray(image(90, 150, seed=6)).save(inputs / "b.tif")
    cli_out, py_out = tmp_path / "cli", tmp_path / "py"
    subprocess.run([cli_binary(), "predict", "--model", str(run), "--input", str(inputs), "--out", str(cli_out),
                    "--tile", "64", "--tta", "flip", "--uncertainty", "--probs", "--logits", "--overlay",
                    "--alpha", "0.4", "--compression", "zstd"],
                   check=True, capture_output=True)
    written = model.predict_file(inputs, py_out, tile=64, tta="flip", uncertainty=True, probs=True, logits=True,
                                 overlay=0.4, compression="zstd")
    assert sorted(written[str(inputs / "a.png")]) == ["logits", "mask", "overlay", "probs", "uncertainty",
                                                       "uncertainty_png"]
    assert os.fspath(written[str(inputs / "b.tif")]["mask"]) == str(py_out / "b.tif")
    names = sorted(os.listdir(cli_out))
    assert names == sorted(os.listdir(py_out))
    assert "predict.json" in names and "b_probs.tif" in names and "a_uncertainty.npy" in names
    for name in names:
        assert (cli_out / name).read_bytes() == (py_out / name).read_bytes(), name
    # The folder is claimed: the same settings skip the finished images,
    # other settings are refused with the differences named.
    again = model.predict_file(inputs / "a.png", py_out, tile=64, tta="flip", uncertainty=True, probs=True,
                               logits=True, overlay=0.4, compression="zstd")
    assert os.fspath(again["mask"]) == str(py_out / "a.png")
    with pytest.raises(wsunet.WsunetError, match="tile 64 there, 48 now"):
        model.predict_file(inputs / "a.png", py_out, tile=48)


def test_objects_from_python_equal_the_command_lines(model, run, tmp_path):
    """output="instances" gives the label image and the table; predict_file
    writes the same object files as `wsunet predict --instances`."""
    import csv
    import subprocess

    from PIL import Image

    x = image(96, 120, seed=8)
    labels, table = model.predict(x, tile=64, output="instances")
    assert labels.dtype == np.uint32 and labels.shape == (96, 120)
    assert [row["id"] for row in table] == list(range(1, labels.max() + 1))
    classes = model.info["classes"]
    for row in table:
        assert row["area"] == int((labels == row["id"]).sum())
        assert row["class"] in [c["name"] for c in classes[1:]]
        assert len(row["mean_intensity"]) == 3
    src = tmp_path / "in" / "cells.png"
    src.parent.mkdir()
    Image.fromarray(x).save(src)
    cli_out, py_out = tmp_path / "cli", tmp_path / "py"
    subprocess.run([cli_binary(), "predict", "--model", str(run), "--input", str(src), "--out", str(cli_out),
                    "--tile", "64", "--instances"], check=True, capture_output=True)
    written = model.predict_file(src, py_out, tile=64, instances=True)
    assert sorted(written) == ["instances", "mask", "objects_csv", "objects_geojson"]
    for name in sorted(os.listdir(cli_out)):
        assert (cli_out / name).read_bytes() == (py_out / name).read_bytes(), name
    with open(written["objects_csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["area"]) for r in rows] == [row["area"] for row in table]


def test_the_gil_is_released_while_predicting(model):
    # A thread predicts a large image; meanwhile this thread counts. If the
    # GIL were held during the computation, the count would stall.
    big = image(640, 640, seed=5)
    model.predict(image())  # warm up
    started = time.perf_counter()
    model.predict(big)
    alone = time.perf_counter() - started
    done = threading.Event()
    counts = []

    def worker():
        model.predict(big)
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    n = 0
    while not done.is_set():
        n += 1
        if n % 1000 == 0:
            counts.append(time.perf_counter())
    t.join()
    # The counting loop ran throughout: ticks spread over most of the
    # prediction, not bunched at its end.
    assert counts, "the main thread never ran while the worker predicted"
    span = counts[-1] - counts[0]
    assert span > 0.3 * alone, f"the main thread ran {span:.3f} s of a {alone:.3f} s prediction"


def test_two_threads_predict_at_once(model):
    x = image(200, 200, seed=9)
    expected = model.predict(x)
    results = [None, None]

    def worker(i):
        results[i] = model.predict(x)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, expected)


def test_resume_continues_a_run(run, tmp_path):
    out = tmp_path / "two"
    wsunet.train(out=str(out), **TINY)
    scores = wsunet.train(resume=str(out), epochs=2)
    assert scores["epochs"] == 2
    with pytest.raises(ValueError, match="only epochs may be given with resume"):
        wsunet.train(resume=str(out), lr=0.1)


def test_help_is_useful():
    assert "run directory" in wsunet.load.__doc__
    assert "settings" in wsunet.train.__doc__
    assert "channel_axis" in wsunet.Model.predict.__doc__


def test_tensorboard_reads_the_runs_event_file(run):
    import csv

    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    acc = event_accumulator.EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ["train/loss", "val/loss", "val/miou", "val/dice", "val/accuracy", "lr", "images_per_sec"]:
        assert tag in tags["scalars"], tags
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for tag, column in [("val/miou", "miou"), ("train/loss", "train_loss"), ("val/loss", "val_loss")]:
        points = acc.Scalars(tag)
        assert [p.step for p in points] == [int(r["epoch"]) for r in rows]
        for p, r in zip(points, rows):
            assert abs(p.value - float(r[column])) < 1e-5, (tag, p.value, r[column])
    assert any(t.startswith("val/overlay/") for t in tags["images"]), tags
