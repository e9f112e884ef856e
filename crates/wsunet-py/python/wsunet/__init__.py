"""wsunet: WS+GroupNorm residual U-Nets for semantic segmentation.

numpy in, numpy out: a Rust core (the `wsunet` library) that releases the GIL
while it computes. Load a trained model and segment arrays or files, or train
one on a dataset folder::

    import wsunet
    model = wsunet.load("runs/run-001")
    labels = model.predict(image)                      # HWC uint8/uint16/float32 -> HxW
    probs = model.predict(image, output="probs")       # HxWxK float32
    model.predict_file("slide.ome.tif", "pred/")       # any size, streamed
    scores = wsunet.train(out="runs/mine", data="my-dataset", epochs=40)
    ids, table = model.predict(image, output="instances")  # objects and their measurements

Any network's background/interior/boundary probabilities become objects with
``wsunet.instances_from_probs``, scored with ``wsunet.object_scores``.

Errors: ``ValueError`` for bad arguments and settings, ``FileNotFoundError``
for missing files, ``wsunet.WsunetError`` for the rest; each carries the
library's message naming what to fix.
"""

from ._wsunet import Model, WsunetError, __version__, instances_from_probs, load, object_scores, train

__all__ = ["Model", "WsunetError", "__version__", "instances_from_probs", "load", "object_scores", "train"]
