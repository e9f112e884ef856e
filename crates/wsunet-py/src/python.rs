//! The `wsunet._wsunet` extension module (see the crate docs).

use std::path::PathBuf;

use numpy::ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis, Ix2, Ix3};
use numpy::{
    IntoPyArray, PyArrayDescrMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use wsunet::Error;
use wsunet::card::ModelCard;
use wsunet::choice;
use wsunet::infer::RowSource;
use wsunet::infer::{PredictConfig, Prediction, Predictor, ProbsType, Tta};
use wsunet::objects::InstanceParams;
use wsunet::objects::metrics::ObjectScores;
use wsunet::predict::objects::extract;
use wsunet::predict::{PredictJob, PredictObserver, SavedModel, Scale, list_inputs};
use wsunet::provenance::Outputs;
use wsunet::raster::Compression;
use wsunet::shard::Shard;
use wsunet::train::{EpochRecord, Observer, SegScores, Session, TrainConfig};

create_exception!(
    wsunet,
    WsunetError,
    PyException,
    "A wsunet failure that is not a bad argument or a missing file: an unreadable image or weight file, a dataset problem, a non-finite loss. The message names the file and the fix."
);

/// The library's error as the Python exception of its kind.
fn py_err(e: Error) -> PyErr {
    let text = e.to_string();
    match &e {
        Error::Setting { .. }
        | Error::Model { .. }
        | Error::Json { .. }
        | Error::InputChannels { .. }
        | Error::InputTooSmall { .. }
        | Error::EmptyImage => PyValueError::new_err(text),
        Error::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(text)
        }
        Error::MissingFolder { .. } | Error::NotAFolder { .. } | Error::NotARun { .. } => {
            PyFileNotFoundError::new_err(text)
        }
        _ => WsunetError::new_err(text),
    }
}

/// A value as Python data (dicts, lists, numbers), through JSON.
fn to_python<T: serde::Serialize>(py: Python<'_>, value: &T) -> PyResult<PyObject> {
    let text = serde_json::to_string(value).map_err(|e| WsunetError::new_err(e.to_string()))?;
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

/// Rows of a numpy image, read in place: `[C, rows, W]` `f32` values, 8-bit
/// samples / 255 and 16-bit / 65535 as for image files, floats as they are.
struct ArrayRows<'a, T> {
    /// `[C, H, W]` (a view: channels first whatever the array's order).
    view: ArrayView3<'a, T>,
    value: fn(T) -> f32,
    next: usize,
}

impl<T: Copy> RowSource for ArrayRows<'_, T> {
    fn size(&self) -> (usize, usize, usize) {
        self.view.dim()
    }

    fn read_rows(&mut self, rows: usize) -> wsunet::Result<Vec<f32>> {
        let (c, h, w) = self.view.dim();
        let rows = rows.min(h - self.next);
        let mut out = Vec::with_capacity(c * rows * w);
        for plane in self.view.axis_iter(Axis(0)) {
            for y in self.next..self.next + rows {
                out.extend(plane.row(y).iter().map(|&v| (self.value)(v)));
            }
        }
        self.next += rows;
        Ok(out)
    }
}

/// An image array as a `[C, H, W]` view: 2-D is one channel; 3-D has its
/// channels on `channel_axis` (0 or −1/2).
fn channels_first<'a, T>(
    view: numpy::ndarray::ArrayViewD<'a, T>,
    channel_axis: isize,
) -> PyResult<ArrayView3<'a, T>> {
    match view.ndim() {
        2 => {
            let v: ArrayView2<T> = view.into_dimensionality::<Ix2>().expect("two dimensions");
            Ok(v.insert_axis(Axis(0)))
        }
        3 => {
            let v = view.into_dimensionality::<Ix3>().expect("three dimensions");
            match channel_axis {
                0 | -3 => Ok(v),
                -1 | 2 => Ok(v.permuted_axes([2, 0, 1])),
                other => Err(PyValueError::new_err(format!(
                    "channel_axis {other}: the channels are on axis 0 (CHW) or -1 (HWC)"
                ))),
            }
        }
        n => Err(PyValueError::new_err(format!(
            "the image has {n} dimensions; give a 2-D grayscale image or a 3-D HWC/CHW one"
        ))),
    }
}

/// Predicts the `[C, H, W]` image `view` (each value through `value`);
/// with `planes`, also returns its values as read, `[C, H, W]` (for the
/// objects' mean intensities).
fn run_view<T: Copy>(
    predictor: &Predictor,
    view: ArrayView3<'_, T>,
    value: fn(T) -> f32,
    keep_logits: bool,
    planes: bool,
) -> wsunet::Result<(Prediction, Vec<f32>)> {
    let image = if planes {
        view.iter().map(|&v| value(v)).collect()
    } else {
        Vec::new()
    };
    let mut rows = ArrayRows {
        view,
        value,
        next: 0,
    };
    let prediction = predictor.predict_source(&mut rows, keep_logits, &mut |_| {})?;
    Ok((prediction, image))
}

/// What `predict` returns.
#[derive(Clone, Copy, PartialEq)]
enum Output {
    Labels,
    Probs,
    Logits,
    Uncertainty,
    Instances,
}

fn parse_output(text: &str) -> PyResult<Output> {
    match text {
        "labels" => Ok(Output::Labels),
        "probs" => Ok(Output::Probs),
        "logits" => Ok(Output::Logits),
        "uncertainty" => Ok(Output::Uncertainty),
        "instances" => Ok(Output::Instances),
        other => Err(PyValueError::new_err(format!(
            "output {other:?}: choose \"labels\", \"probs\", \"logits\", \"uncertainty\" or \"instances\""
        ))),
    }
}

fn parse_tta(text: &str) -> PyResult<Tta> {
    choice::parse("tta", text, &Tta::ALL).map_err(py_err)
}

/// A trained WSResUNet, ready to predict. Made by `wsunet.load`.
#[pyclass(module = "wsunet", frozen)]
struct Model {
    saved: SavedModel,
    card: ModelCard,
    predictor: Predictor,
    digest: String,
    path: PathBuf,
}

/// Keeps the first image error of a job, to raise it.
#[derive(Default)]
struct Failures {
    first: std::sync::Mutex<Option<Error>>,
}

impl PredictObserver for Failures {
    fn failed(&self, _input: &std::path::Path, error: Error) {
        self.first
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(error);
    }
}

impl Model {
    /// The predictor with this call's settings over the model's defaults.
    #[allow(clippy::too_many_arguments)]
    fn predictor(
        &self,
        tile: Option<usize>,
        overlap: Option<f32>,
        tta: &str,
        batch_size: Option<usize>,
        scale: f64,
        skip_empty: bool,
        uncertainty: bool,
    ) -> PyResult<Predictor> {
        let base = self.predictor.config();
        let config = PredictConfig {
            tile: tile.unwrap_or(base.tile),
            overlap: overlap.unwrap_or(base.overlap),
            batch_size: batch_size.unwrap_or(base.batch_size),
            tta: parse_tta(tta)?,
            skip_empty,
            scale,
            uncertainty,
        };
        self.predictor.with_config(config).map_err(py_err)
    }
}

/// `[K, H, W]` values with the class axis moved to `channel_axis`.
fn class_array(
    py: Python<'_>,
    values: Vec<f32>,
    (k, h, w): (usize, usize, usize),
    channel_axis: isize,
) -> PyResult<PyObject> {
    let planes = Array3::from_shape_vec((k, h, w), values).expect("K·H·W values");
    let array = if matches!(channel_axis, 0 | -3) {
        planes
    } else {
        planes
            .permuted_axes([1, 2, 0])
            .as_standard_layout()
            .into_owned()
    };
    Ok(array.into_pyarray(py).into_any().unbind())
}

#[pymethods]
impl Model {
    /// The model card as a dict: architecture (`model`), `classes`,
    /// `normalize`, training `crop`, `pixel_size`, and the
    /// `weights_digest` (the same for the same weights in any file).
    #[getter]
    fn info(&self, py: Python<'_>) -> PyResult<PyObject> {
        let info = to_python(py, &self.card)?;
        let dict = info.bind(py).downcast::<PyDict>()?;
        dict.set_item("weights_digest", &self.digest)?;
        dict.set_item("path", self.path.display().to_string())?;
        Ok(info)
    }

    /// Segments one image.
    ///
    /// `array`: uint8, uint16 or float32; 2-D grayscale, or 3-D with the
    /// channels on `channel_axis` (-1: HWC, the default; 0: CHW). 8-bit
    /// values are divided by 255 and 16-bit by 65535, as for image files;
    /// floats are used as they are; then the model's normalization is
    /// applied. The array is read in place (no copy of the image).
    ///
    /// `output`: "labels" (H×W, uint8 or uint16 class indices), "probs" or
    /// "logits" (float32, the classes on `channel_axis`), or "uncertainty"
    /// (with `tta="flip"`: float32, on `channel_axis` the entropy of the
    /// averaged probabilities over ln(classes) and the share of the flips
    /// that disagree with the prediction, both in [0, 1]), or "instances"
    /// (a tuple: H×W uint32 object ids, 0 background, and a list of dicts,
    /// one per object, with the columns of `wsunet predict`'s
    /// NAME_objects.csv: `id`, `class`, `area`, `centroid_x`, `centroid_y`,
    /// `bbox_x`, `bbox_y`, `bbox_width`, `bbox_height`, `mean_probability`,
    /// `mean_intensity`; an instance model's objects grown from their
    /// interiors, a semantic model's each class's connected pieces). `tile` defaults
    /// to the model's training crop, `overlap` to 0.25; `tta="flip"`
    /// averages the four flips; `scale` resamples the image for the
    /// network (2: pixels half the size); `skip_empty` leaves out tiles
    /// without image. The GIL is released while the network runs.
    #[pyo3(signature = (array, *, tile=None, overlap=None, tta="none", output="labels", channel_axis=-1, batch_size=None, scale=1.0, skip_empty=false))]
    #[allow(clippy::too_many_arguments)]
    fn predict(
        &self,
        py: Python<'_>,
        array: &Bound<'_, PyAny>,
        tile: Option<usize>,
        overlap: Option<f32>,
        tta: &str,
        output: &str,
        channel_axis: isize,
        batch_size: Option<usize>,
        scale: f64,
        skip_empty: bool,
    ) -> PyResult<PyObject> {
        let output = parse_output(output)?;
        let uncertainty = output == Output::Uncertainty;
        let predictor = self.predictor(
            tile,
            overlap,
            tta,
            batch_size,
            scale,
            skip_empty,
            uncertainty,
        )?;
        let keep_logits = output == Output::Logits;
        let untyped = array.downcast::<PyUntypedArray>().map_err(|_| {
            PyValueError::new_err("the image must be a numpy array (uint8, uint16 or float32)")
        })?;
        let dtype = untyped.dtype();
        let planes = output == Output::Instances;
        let (prediction, image) = if dtype.is_equiv_to(&numpy::dtype::<u8>(py)) {
            let a: PyReadonlyArrayDyn<u8> = array.extract()?;
            let view = channels_first(a.as_array(), channel_axis)?;
            py.allow_threads(|| run_view(&predictor, view, |v| v as f32 / 255.0, keep_logits, planes))
        } else if dtype.is_equiv_to(&numpy::dtype::<u16>(py)) {
            let a: PyReadonlyArrayDyn<u16> = array.extract()?;
            let view = channels_first(a.as_array(), channel_axis)?;
            py.allow_threads(|| {
                run_view(&predictor, view, |v| v as f32 / 65535.0, keep_logits, planes)
            })
        } else if dtype.is_equiv_to(&numpy::dtype::<f32>(py)) {
            let a: PyReadonlyArrayDyn<f32> = array.extract()?;
            let view = channels_first(a.as_array(), channel_axis)?;
            if let Some(v) = view.iter().find(|v| !v.is_finite()) {
                return Err(PyValueError::new_err(format!(
                    "the image holds a non-finite value ({v}); replace NaN and infinities first (e.g. numpy.nan_to_num)"
                )));
            }
            py.allow_threads(|| run_view(&predictor, view, |v| v, keep_logits, planes))
        } else {
            return Err(PyValueError::new_err(format!(
                "the image's dtype is {dtype}; give uint8, uint16 or float32 (e.g. image.astype(numpy.float32))"
            )));
        }
        .map_err(py_err)?;
        let (k, h, w) = (prediction.num_classes, prediction.height, prediction.width);
        match output {
            Output::Labels => {
                let mask = prediction.mask();
                if k <= 256 {
                    let labels: Vec<u8> = mask.data.iter().map(|&l| l as u8).collect();
                    let a = Array2::from_shape_vec((h, w), labels).expect("H·W labels");
                    Ok(a.into_pyarray(py).into_any().unbind())
                } else {
                    let a = Array2::from_shape_vec((h, w), mask.data).expect("H·W labels");
                    Ok(a.into_pyarray(py).into_any().unbind())
                }
            }
            Output::Probs => class_array(py, prediction.probs, (k, h, w), channel_axis),
            Output::Logits => class_array(
                py,
                prediction.logits.expect("logits kept"),
                (k, h, w),
                channel_axis,
            ),
            Output::Uncertainty => class_array(
                py,
                prediction.uncertainty().expect("disagreement kept"),
                (2, h, w),
                channel_axis,
            ),
            Output::Instances => {
                let objects = extract(&prediction, &self.card).map_err(py_err)?;
                let planes: Vec<&[f32]> = image.chunks(h * w).collect();
                let rows = objects.rows(&planes);
                let labels = Array2::from_shape_vec((h, w), objects.labels).expect("H·W labels");
                let table = to_python(py, &rows)?;
                Ok((labels.into_pyarray(py), table)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind())
            }
        }
    }

    /// Segments image files into `out_dir` exactly as `wsunet predict`
    /// does (the same library job: the same files, byte for byte, and the
    /// folder's `predict.json`): `NAME.png` (and `_overlay.png`,
    /// `_probs.npy`, `_logits.npy`, `_uncertainty.png`/`.npy` on request)
    /// for PNG/JPEG/npy inputs; for TIFF inputs of any size, streamed into
    /// tiled, pyramidal `NAME.tif` files with the input's georeferencing
    /// (`level`, `compression`, `probs_type` apply to them); `instances`
    /// (always for an instance model): `NAME_instances.tif`,
    /// `NAME_objects.csv`, `NAME_objects.geojson`. `src`: a file,
    /// a folder of images, or a list of them. Images whose outputs are
    /// complete are skipped unless `overwrite`; a folder predicted with
    /// another model or other settings is refused. `scale`: a factor, or
    /// "auto" (each TIFF's pixel size over the model's). Returns, for one
    /// file, its paths by kind (`mask`, `overlay`, `probs`, `logits`,
    /// `uncertainty`, `uncertainty_png`, `instances`, `objects_csv`,
    /// `objects_geojson`); for a folder or list, a dict of
    /// those by input path. The GIL is released meanwhile.
    #[pyo3(signature = (src, out_dir, *, tile=None, overlap=None, tta="none", probs=false, logits=false, overlay=None, uncertainty=false, instances=false, level=0, compression="deflate", probs_type="u8", batch_size=None, scale=None, skip_empty=false, overwrite=false))]
    #[allow(clippy::too_many_arguments)]
    fn predict_file(
        &self,
        py: Python<'_>,
        src: &Bound<'_, PyAny>,
        out_dir: PathBuf,
        tile: Option<usize>,
        overlap: Option<f32>,
        tta: &str,
        probs: bool,
        logits: bool,
        overlay: Option<f32>,
        uncertainty: bool,
        instances: bool,
        level: usize,
        compression: &str,
        probs_type: &str,
        batch_size: Option<usize>,
        scale: Option<&Bound<'_, PyAny>>,
        skip_empty: bool,
        overwrite: bool,
    ) -> PyResult<PyObject> {
        let (inputs, one): (Vec<PathBuf>, bool) = match src.extract::<PathBuf>() {
            Ok(path) => {
                let one = !path.is_dir();
                (vec![path], one)
            }
            Err(_) => (src.extract::<Vec<PathBuf>>()?, false),
        };
        if let Some(missing) = inputs.iter().find(|p| !p.exists()) {
            return Err(PyFileNotFoundError::new_err(format!(
                "{}: no such file or folder",
                missing.display()
            )));
        }
        let scale = match scale {
            None => Scale::default(),
            Some(s) => match s.extract::<f64>() {
                Ok(f) => Scale::Factor(f),
                Err(_) => s.extract::<String>()?.parse::<Scale>().map_err(py_err)?,
            },
        };
        let job = PredictJob {
            out: out_dir,
            outputs: Outputs {
                overlay,
                probs,
                logits,
                uncertainty,
                instances,
            },
            level,
            compression: choice::parse("compression", compression, &Compression::ALL)
                .map_err(py_err)?,
            probs_type: choice::parse("probs_type", probs_type, &ProbsType::ALL).map_err(py_err)?,
            scale,
            shard: Shard::default(),
            overwrite,
        };
        let predictor =
            self.predictor(tile, overlap, tta, batch_size, 1.0, skip_empty, uncertainty)?;
        let failures = Failures::default();
        let report = py
            .allow_threads(|| job.run(&predictor, &self.saved, &inputs, &failures))
            .map_err(py_err)?;
        if let Some(e) = failures
            .first
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
        {
            return Err(py_err(e));
        }
        report.check().map_err(py_err)?;
        let job = job.for_model(&self.card);
        let files_of = |input: &PathBuf| -> PyResult<Bound<'_, PyDict>> {
            let stem = input
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dict = PyDict::new(py);
            for (kind, path) in job.files_of(input, &stem) {
                dict.set_item(kind, path)?;
            }
            Ok(dict)
        };
        if one {
            return Ok(files_of(&inputs[0])?.into_any().unbind());
        }
        let all = PyDict::new(py);
        for input in list_inputs(&inputs).map_err(py_err)? {
            all.set_item(input.display().to_string(), files_of(&input)?)?;
        }
        Ok(all.into_any().unbind())
    }

    fn __repr__(&self) -> String {
        let m = &self.card.model;
        format!(
            "wsunet.Model({}: {} channels → {} classes, widths {:?}, crop {})",
            self.path.display(),
            m.in_channels,
            m.num_classes,
            m.widths,
            self.card
                .crop
                .map_or("unknown".into(), |[h, w]| format!("{h}×{w}"))
        )
    }
}

/// Loads a trained model: a run directory (its final `model.bpk`), or a
/// model's `.bpk` or `.json` card, on `device` ("cpu", or "gpu"/"cuda" in
/// builds with a GPU backend).
#[pyfunction]
#[pyo3(signature = (path, *, device="cpu"))]
fn load(py: Python<'_>, path: PathBuf, device: &str) -> PyResult<Model> {
    if !path.exists() {
        return Err(PyFileNotFoundError::new_err(format!(
            "{}: no such file or run directory",
            path.display()
        )));
    }
    let device = wsunet::parse_device(device).map_err(py_err)?;
    py.allow_threads(|| -> wsunet::Result<Model> {
        let saved = SavedModel::load(&path, &device)?;
        let config = PredictConfig {
            tile: PredictConfig::tile_for(&saved.card),
            ..PredictConfig::default()
        };
        let predictor = saved.predictor(config, device)?;
        Ok(Model {
            card: saved.card.clone(),
            digest: saved.digest.clone(),
            path: path.clone(),
            saved,
            predictor,
        })
    })
    .map_err(py_err)
}

/// Reports training to Python: `progress(record)` after each validated
/// epoch, and Ctrl-C (KeyboardInterrupt) stops the run after the epoch under
/// way, checkpointed.
struct PyObserver {
    progress: Option<PyObject>,
    quiet: bool,
    /// The Python error that stopped the run (a KeyboardInterrupt, or the
    /// callback's own exception).
    error: Option<PyErr>,
}

impl Observer for PyObserver {
    fn info(&mut self, line: &str) {
        if !self.quiet {
            Python::with_gil(|py| {
                let _ = py
                    .import("builtins")
                    .and_then(|b| b.call_method1("print", (line,)));
            });
        }
    }

    fn epoch_end(&mut self, record: &EpochRecord, _scores: &SegScores, is_best: bool) {
        let Some(progress) = &self.progress else {
            return;
        };
        Python::with_gil(|py| {
            let called = to_python(py, record).and_then(|r| {
                r.bind(py).downcast::<PyDict>()?.set_item("best", is_best)?;
                progress.call1(py, (r,))
            });
            if let Err(e) = called {
                self.error.get_or_insert(e);
            }
        });
    }

    fn should_stop(&mut self) -> bool {
        if self.error.is_none()
            && let Err(e) = Python::with_gil(|py| py.check_signals())
        {
            self.error = Some(e);
        }
        self.error.is_some()
    }
}

/// Trains a model into the run directory `out`, as `wsunet train` does, and
/// returns its scores (`miou`, `dice`, `accuracy`, the per-class table,
/// `best_miou` and `best_epoch`, `epochs`, `seconds`, `run`, and `plan`:
/// each planned setting with its reason).
///
/// `data`: a dataset folder (default: the built-in shapes data).
/// `settings`: any field of `wsunet train`'s config file (`epochs`,
/// `batch_size`, `lr`, `crop`, `time="10m"`, `model={"widths": […]}`, …),
/// checked by the library with its messages. The settings not given are
/// planned from the data as `wsunet train` plans them. `resume`: continue the run in that directory
/// instead (with `epochs` to extend it). `progress(record)` is called after
/// each validated epoch with its losses and scores. Ctrl-C stops after the
/// epoch under way, which is checkpointed, and raises KeyboardInterrupt.
#[pyfunction]
#[pyo3(signature = (*, out=None, data=None, resume=None, progress=None, quiet=true, **settings))]
fn train(
    py: Python<'_>,
    out: Option<PathBuf>,
    data: Option<PathBuf>,
    resume: Option<PathBuf>,
    progress: Option<PyObject>,
    quiet: bool,
    settings: Option<&Bound<'_, PyDict>>,
) -> PyResult<PyObject> {
    let session = match resume {
        Some(dir) => {
            let epochs = match settings {
                Some(s) => s.get_item("epochs")?.map(|e| e.extract()).transpose()?,
                None => None,
            };
            if settings.is_some_and(|s| s.keys().iter().any(|k| k.to_string() != "epochs")) {
                return Err(PyValueError::new_err(
                    "a resumed run keeps its own settings; only epochs may be given with resume",
                ));
            }
            py.allow_threads(|| Session::resume(&dir, epochs, None))
                .map_err(py_err)?
        }
        None => {
            let out = out.ok_or_else(|| {
                PyValueError::new_err("give out=, the run directory to train into")
            })?;
            let mut fields = serde_json::Map::new();
            if let Some(s) = settings {
                let text: String = py.import("json")?.call_method1("dumps", (s,))?.extract()?;
                if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&text) {
                    fields = map;
                }
            }
            if let Some(d) = &data {
                fields.insert("data".into(), serde_json::json!(d));
            }
            // time="10m" as on the command line; a number is seconds.
            if let Some(serde_json::Value::String(text)) = fields.get("time") {
                let seconds = wsunet::train::parse_duration(text)
                    .map_err(|e| PyValueError::new_err(format!("time: {e}")))?;
                fields.insert("time".into(), serde_json::json!(seconds));
            }
            // The settings given stay; the plan sets the rest from the data.
            let given: wsunet::train::Given = fields.keys().cloned().collect();
            let config: TrainConfig = serde_json::from_value(serde_json::Value::Object(fields))
                .map_err(|e| PyValueError::new_err(format!("invalid training settings: {e}")))?;
            py.allow_threads(|| Session::planned(config, &given, &out))
                .map_err(py_err)?
        }
    };
    let mut observer = PyObserver {
        progress,
        quiet,
        error: None,
    };
    let summary = py
        .allow_threads(|| session.run(&mut observer))
        .map_err(py_err)?;
    if let Some(e) = observer.error {
        return Err(e);
    }
    let result = PyDict::new(py);
    let s = &summary.scores;
    result.set_item("run", session.dir.path().to_path_buf())?;
    result.set_item("epochs", summary.state.epoch)?;
    result.set_item("seconds", summary.seconds)?;
    result.set_item("miou", s.miou)?;
    result.set_item("dice", s.mean_dice)?;
    result.set_item("accuracy", s.pixel_accuracy)?;
    result.set_item("classes", to_python(py, &s.classes)?)?;
    if let Some((epoch, miou)) = summary.state.best {
        result.set_item("best_epoch", epoch)?;
        result.set_item("best_miou", miou)?;
    }
    result.set_item("history", to_python(py, &summary.state.history)?)?;
    result.set_item("plan", to_python(py, &session.config.plan)?)?;
    Ok(result.into_any().unbind())
}

/// A label image as row-major `u32` ids with its height and width (any
/// integer array; converted by numpy).
fn label_image(py: Python<'_>, labels: &Bound<'_, PyAny>) -> PyResult<(Vec<u32>, usize, usize)> {
    let numpy = py.import("numpy")?;
    let array = numpy.call_method1("ascontiguousarray", (labels, "uint32"))?;
    let a: numpy::PyReadonlyArray2<u32> = array.extract().map_err(|_| {
        PyValueError::new_err(
            "a label image must be a 2-D integer array (0 background, each object its own id)",
        )
    })?;
    let view = a.as_array();
    let (h, w) = view.dim();
    Ok((view.iter().copied().collect(), h, w))
}

/// Objects from an instance network's probabilities, grown from their
/// interiors exactly as `wsunet predict` grows them: seeds where
/// P(interior) ≥ `interior_threshold`, grown over pixels where
/// 1 − P(background) ≥ `region_threshold` in order of rising P(boundary);
/// objects under `min_area` pixels dropped; ids 1…N in raster order.
/// `probs`: float32 background, interior, boundary probabilities, the three
/// on `channel_axis` (0: CHW, the default; -1: HWC). Returns H×W uint32 ids.
/// Unset settings take the library's defaults.
#[pyfunction]
#[pyo3(signature = (probs, *, interior_threshold=None, region_threshold=None, min_area=None, channel_axis=0))]
fn instances_from_probs(
    py: Python<'_>,
    probs: &Bound<'_, PyAny>,
    interior_threshold: Option<f32>,
    region_threshold: Option<f32>,
    min_area: Option<usize>,
    channel_axis: isize,
) -> PyResult<PyObject> {
    let numpy = py.import("numpy")?;
    let array = numpy.call_method1("asarray", (probs, "float32"))?;
    let a: PyReadonlyArrayDyn<f32> = array.extract()?;
    let view = channels_first(a.as_array(), channel_axis)?;
    let (k, h, w) = view.dim();
    if k != 3 || view.ndim() != 3 {
        return Err(PyValueError::new_err(format!(
            "probs has {k} planes on channel_axis; give 3 (background, interior, boundary)"
        )));
    }
    let planar: Vec<f32> = view.iter().copied().collect();
    let defaults = InstanceParams::default();
    let params = InstanceParams {
        interior_threshold: interior_threshold.unwrap_or(defaults.interior_threshold),
        region_threshold: region_threshold.unwrap_or(defaults.region_threshold),
        min_area: min_area.unwrap_or(defaults.min_area),
    };
    let (labels, _) =
        py.allow_threads(|| wsunet::objects::grow::instances_from_probs(&planar, 3, w, h, &params));
    let a = Array2::from_shape_vec((h, w), labels).expect("H·W labels");
    Ok(a.into_pyarray(py).into_any().unbind())
}

/// Object scores of predicted label images against true ones (pairs of
/// 2-D integer arrays, 0 background), as `wsunet eval` computes them:
/// `ap50` (TP / (TP + FP + FN) at IoU 0.5, the Data Science Bowl's "AP"),
/// `ap` (its mean over IoU 0.5 … 0.95), `f1_50`, `pq` (panoptic quality),
/// `counts` (true, predicted, matched, missed, split, merged) and the
/// matches at each threshold; counts pooled over the images.
#[pyfunction]
fn object_scores(
    py: Python<'_>,
    truths: Vec<Bound<'_, PyAny>>,
    preds: Vec<Bound<'_, PyAny>>,
) -> PyResult<PyObject> {
    if truths.len() != preds.len() {
        return Err(PyValueError::new_err(format!(
            "{} true label images but {} predicted ones; give pairs",
            truths.len(),
            preds.len()
        )));
    }
    let mut scores = ObjectScores::default();
    for (k, (t, p)) in truths.iter().zip(&preds).enumerate() {
        let (t, th, tw) = label_image(py, t)?;
        let (p, ph, pw) = label_image(py, p)?;
        if (th, tw) != (ph, pw) {
            return Err(PyValueError::new_err(format!(
                "pair {k}: the true labels are {th}×{tw} but the predicted {ph}×{pw}"
            )));
        }
        scores.add(&t, &p);
    }
    let result = to_python(py, &scores)?;
    let dict = result.bind(py).downcast::<PyDict>()?;
    dict.set_item("ap50", scores.ap50())?;
    dict.set_item("ap", scores.ap())?;
    dict.set_item("f1_50", scores.f1_50())?;
    dict.set_item("pq", scores.pq())?;
    Ok(result)
}

/// The `wsunet._wsunet` module.
#[pymodule]
fn _wsunet(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(instances_from_probs, m)?)?;
    m.add_function(wrap_pyfunction!(object_scores, m)?)?;
    m.add_class::<Model>()?;
    m.add("WsunetError", m.py().get_type::<WsunetError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
