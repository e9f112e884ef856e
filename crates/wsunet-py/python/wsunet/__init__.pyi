"""Type stubs of the wsunet package (the `wsunet._wsunet` extension)."""

from os import PathLike
from typing import Any, Callable, Literal, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, PathLike[str]]

class WsunetError(Exception):
    """A failure that is not a bad argument or a missing file."""

class Model:
    """A trained WSResUNet, ready to predict. Made by :func:`load`."""

    @property
    def info(self) -> dict[str, Any]:
        """The model card: model, classes, normalize, crop, pixel_size,
        weights_digest, path."""
    def predict(
        self,
        array: npt.NDArray[Union[np.uint8, np.uint16, np.float32]],
        *,
        tile: Optional[int] = None,
        overlap: Optional[float] = None,
        tta: Literal["none", "flip"] = "none",
        output: Literal["labels", "probs", "logits", "uncertainty", "instances"] = "labels",
        channel_axis: int = -1,
        batch_size: Optional[int] = None,
        scale: float = 1.0,
        skip_empty: bool = False,
    ) -> Any:
        """Segments one image (2-D gray, or 3-D with the channels on
        channel_axis): labels HxW, or probs/logits float32 with the classes
        on channel_axis; "uncertainty" (needs tta="flip"): the entropy and
        the flips' disagreement, float32, the two maps on channel_axis;
        "instances": (uint32 HxW object ids, a list of dicts, one per
        object, with the columns of NAME_objects.csv)."""
    def predict_file(
        self,
        src: Union[_Path, Sequence[_Path]],
        out_dir: _Path,
        *,
        tile: Optional[int] = None,
        overlap: Optional[float] = None,
        tta: Literal["none", "flip"] = "none",
        probs: bool = False,
        logits: bool = False,
        overlay: Optional[float] = None,
        uncertainty: bool = False,
        instances: bool = False,
        level: int = 0,
        compression: Literal["none", "deflate", "zstd"] = "deflate",
        probs_type: Literal["u8", "f32"] = "u8",
        batch_size: Optional[int] = None,
        scale: Union[float, Literal["auto"], None] = None,
        skip_empty: bool = False,
        overwrite: bool = False,
    ) -> dict[str, Any]:
        """Segments image files into out_dir exactly as `wsunet predict`
        does (the same files and predict.json; TIFFs streamed into tiled,
        pyramidal TIFFs). For one file, returns its paths by kind; for a
        folder or a list, those dicts by input path."""

def instances_from_probs(
    probs: npt.ArrayLike,
    *,
    interior_threshold: Optional[float] = None,
    region_threshold: Optional[float] = None,
    min_area: Optional[int] = None,
    channel_axis: int = 0,
) -> npt.NDArray[np.uint32]:
    """Objects (HxW uint32 ids) from background/interior/boundary
    probabilities, grown from the interiors as `wsunet predict` grows them."""

def object_scores(truths: Sequence[npt.ArrayLike], preds: Sequence[npt.ArrayLike]) -> dict[str, Any]:
    """AP50, AP 0.5:0.95, F1@0.5, panoptic quality and error counts of
    predicted label images against true ones, pooled over the pairs."""

def load(path: _Path, *, device: str = "cpu") -> Model:
    """Loads a run directory, or a model's .bpk/.json."""

def train(
    *,
    out: Optional[_Path] = None,
    data: Optional[_Path] = None,
    resume: Optional[_Path] = None,
    progress: Optional[Callable[[dict[str, Any]], None]] = None,
    quiet: bool = True,
    **settings: Any,
) -> dict[str, Any]:
    """Trains into the run directory out (settings: the fields of
    `wsunet train`'s config file; those not given are planned from the data,
    as `wsunet train` plans them; time="10m" trains for a wall-clock budget)
    and returns its scores, with "plan": each planned setting and its reason."""
