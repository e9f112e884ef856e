//! TensorBoard event files for a run: per-epoch losses, scores, learning
//! rate, throughput and per-class IoU as scalars, and validation overlays as
//! images, in the file [`RunDir::tensorboard_events`] names.
//!
//! No maintained Rust crate writes them, so this is the format itself:
//! TFRecord framing (a little-endian `u64` length, its masked CRC-32C, the
//! payload, the payload's masked CRC-32C) around TensorFlow's `Event`
//! protobuf (`tensorflow/core/util/event.proto`, `summary.proto`), encoded
//! with prost as the ONNX export is. The first record states the file
//! version (`brain.Event:2`). Like `metrics.csv`, the file is rewritten
//! whole from the run's history after every validated epoch (atomically),
//! so a resumed run never repeats or loses a step.

use std::path::{Path, PathBuf};

use prost::Message;

use super::state::EpochRecord;
use crate::error::{Error, Result};
use crate::fs::write_atomic;
use crate::run_dir::RunDir;

/// `tensorflow.Event`.
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The step (here the epoch).
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// What the event holds.
    #[prost(oneof = "EventKind", tags = "3, 5")]
    pub what: Option<EventKind>,
}

/// `Event.what`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum EventKind {
    /// The format version, in the first event.
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// Values.
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`.
#[derive(Clone, PartialEq, Message)]
pub struct SummaryValue {
    /// The series name (`val/miou`).
    #[prost(string, tag = "1")]
    pub tag: String,
    /// Its value.
    #[prost(oneof = "ValueKind", tags = "2, 4")]
    pub value: Option<ValueKind>,
}

/// `Summary.Value.value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ValueKind {
    /// A scalar.
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    /// An encoded image.
    #[prost(message, tag = "4")]
    Image(SummaryImage),
}

/// `tensorflow.Summary.Image`.
#[derive(Clone, PartialEq, Message)]
pub struct SummaryImage {
    /// Height in pixels.
    #[prost(int32, tag = "1")]
    pub height: i32,
    /// Width in pixels.
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 3: RGB.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    /// PNG bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
fn crc32c(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, entry) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0x82F6_3B78 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *entry = c;
        }
        t
    });
    !bytes.iter().fold(!0u32, |c, &b| {
        table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8)
    })
}

/// TFRecord's masked CRC.
fn masked_crc(bytes: &[u8]) -> u32 {
    let c = crc32c(bytes);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// One TFRecord.
fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc(payload).to_le_bytes());
}

/// The events of a file, every record's CRCs checked.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let bad = |reason: &str| Error::Data {
        path: path.to_path_buf(),
        reason: format!("not a TensorBoard event file: {reason}"),
    };
    let mut events = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        if rest.len() < 12 {
            return Err(bad("a record is cut short"));
        }
        let len_bytes = &rest[..8];
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
        if crc != masked_crc(len_bytes) {
            return Err(bad("a length's CRC does not match"));
        }
        let body = rest
            .get(12..12 + len + 4)
            .ok_or_else(|| bad("a record is cut short"))?;
        let (payload, crc) = body.split_at(len);
        if u32::from_le_bytes(crc.try_into().expect("4 bytes")) != masked_crc(payload) {
            return Err(bad("a record's CRC does not match"));
        }
        events.push(Event::decode(payload).map_err(|e| bad(&e.to_string()))?);
        rest = &rest[12 + len + 4..];
    }
    Ok(events)
}

fn scalar(tag: String, value: f64) -> SummaryValue {
    SummaryValue {
        tag,
        value: Some(ValueKind::SimpleValue(value as f32)),
    }
}

/// An overlay image for an epoch's event: `(tag, width, height, PNG bytes)`.
pub type Overlay = (String, u32, u32, Vec<u8>);

/// Rewrites the run's event file from its history: one event per epoch
/// with every scalar of its record (`train/loss`, `val/loss`, `val/miou`,
/// `val/dice`, `val/accuracy`, `lr`, `images_per_sec`, `val/iou/CLASS`) and
/// the overlays `overlays(epoch)` gives.
pub fn write_events(
    run: &RunDir,
    history: &[EpochRecord],
    classes: &[String],
    overlays: &dyn Fn(usize) -> Vec<Overlay>,
) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut bytes = Vec::new();
    let version = Event {
        wall_time: now,
        step: 0,
        what: Some(EventKind::FileVersion("brain.Event:2".into())),
    };
    frame(&version.encode_to_vec(), &mut bytes);
    for r in history {
        let mut value = vec![
            scalar("train/loss".into(), r.train_loss),
            scalar("val/loss".into(), r.val_loss),
            scalar("val/miou".into(), r.miou),
            scalar("val/dice".into(), r.mean_dice),
            scalar("val/accuracy".into(), r.pixel_accuracy),
            scalar("lr".into(), r.lr),
            scalar("images_per_sec".into(), r.images_per_sec),
        ];
        for (c, iou) in r.class_iou.iter().enumerate() {
            if let Some(iou) = iou {
                let name = classes.get(c).cloned().unwrap_or_else(|| c.to_string());
                value.push(scalar(format!("val/iou/{name}"), *iou));
            }
        }
        for (tag, width, height, png) in overlays(r.epoch) {
            value.push(SummaryValue {
                tag,
                value: Some(ValueKind::Image(SummaryImage {
                    height: height as i32,
                    width: width as i32,
                    colorspace: 3,
                    encoded_image_string: png,
                })),
            });
        }
        let event = Event {
            wall_time: now,
            step: r.epoch as i64,
            what: Some(EventKind::Summary(Summary { value })),
        };
        frame(&event.encode_to_vec(), &mut bytes);
    }
    write_atomic(&run.tensorboard_events(), &bytes)
}

/// Validation samples shown as overlays, and how often (every this many
/// epochs, and the last).
pub const OVERLAYS: usize = 3;
/// See [`OVERLAYS`].
pub const OVERLAY_EVERY: usize = 5;
/// The largest side shown (larger images show their top-left corner).
const OVERLAY_SIDE: usize = 512;

fn overlay_path(run: &RunDir, epoch: usize, i: usize) -> PathBuf {
    run.overlays().join(format!("epoch-{epoch:04}-{i}.png"))
}

/// Predicts the first [`OVERLAYS`] validation samples with `model` and
/// saves their overlays (predicted classes over the image) for `epoch`.
pub(crate) fn save_overlays(
    run: &RunDir,
    epoch: usize,
    model: &crate::model::WsResUNet,
    val: &crate::data::SegDataset,
    normalize: &crate::data::Normalize,
    classes: &crate::data::ClassList,
) -> Result<()> {
    use burn::data::dataset::Dataset;
    use burn::tensor::{Tensor, TensorData};
    let dir = run.overlays();
    std::fs::create_dir_all(&dir).map_err(|error| Error::Io {
        path: dir.clone(),
        error,
    })?;
    let device = model.head.weight.val().device();
    for i in 0..OVERLAYS.min(val.len()) {
        let Ok(item) = val.get(i) else { continue };
        let mut image = item.image;
        let (c, h, w) = (image.channels, image.height, image.width);
        if h < crate::model::MIN_INPUT_SIZE || w < crate::model::MIN_INPUT_SIZE {
            continue;
        }
        let x = Tensor::<4>::from_data(TensorData::new(image.data.clone(), [1, c, h, w]), &device);
        let labels: Vec<u16> = model
            .forward(x)
            .argmax(1)
            .into_data()
            .iter::<i64>()
            .map(|v| v as u16)
            .collect();
        // Back to the values as read, for display.
        for (ch, plane) in image.data.chunks_mut(h * w).enumerate() {
            let (m, s) = (normalize.mean[ch], normalize.std[ch]);
            plane.iter_mut().for_each(|v| *v = *v * s + m);
        }
        let (sh, sw) = (h.min(OVERLAY_SIDE), w.min(OVERLAY_SIDE));
        let crop = |values: &[f32]| -> Vec<f32> {
            values
                .chunks(h * w)
                .flat_map(|p| (0..sh).flat_map(move |y| &p[y * w..y * w + sw]))
                .copied()
                .collect()
        };
        let shown = crate::data::Image::new(c, sh, sw, crop(&image.data));
        let mask_rows: Vec<u16> = (0..sh)
            .flat_map(|y| labels[y * w..y * w + sw].iter().copied())
            .collect();
        let mask = crate::data::Mask::new(sh, sw, mask_rows);
        let rgb = crate::infer::overlay(&shown, &mask, classes, 0.5);
        crate::data::io::write_rgb8_png(&overlay_path(run, epoch, i), sw, sh, &rgb)?;
    }
    Ok(())
}

/// The saved overlays of `epoch`, for [`write_events`].
pub(crate) fn saved_overlays(run: &RunDir, epoch: usize) -> Vec<Overlay> {
    (0..OVERLAYS)
        .filter_map(|i| {
            let png = std::fs::read(overlay_path(run, epoch, i)).ok()?;
            // Width and height from the PNG header (IHDR at bytes 16..24).
            let dim = |at: usize| -> Option<u32> {
                Some(u32::from_be_bytes(png.get(at..at + 4)?.try_into().ok()?))
            };
            let (width, height) = (dim(16)?, dim(20)?);
            Some((format!("val/overlay/{i}"), width, height, png))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The CRC-32C of "123456789" (RFC 3720's check value).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn events_round_trip_with_their_crcs() {
        let dir = tempfile::tempdir().unwrap();
        let record = EpochRecord {
            epoch: 3,
            train_loss: 0.5,
            val_loss: 0.25,
            miou: 0.75,
            mean_dice: 0.8,
            pixel_accuracy: 0.9,
            lr: 1e-3,
            seconds: 2.0,
            images_per_sec: 100.0,
            class_iou: vec![Some(0.5), None],
            ap50: None,
        };
        let png = vec![1u8, 2, 3];
        let run = RunDir::new(dir.path());
        write_events(
            &run,
            &[record],
            &["background".into(), "cell".into()],
            &|epoch| vec![(format!("val/overlay/{epoch}"), 2, 1, png.clone())],
        )
        .unwrap();
        let path = run.tensorboard_events();
        let events = read_events(&path).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0].what,
            Some(EventKind::FileVersion("brain.Event:2".into()))
        );
        let Some(EventKind::Summary(s)) = &events[1].what else {
            panic!("a summary")
        };
        assert_eq!(events[1].step, 3);
        let get = |tag: &str| {
            s.value
                .iter()
                .find(|v| v.tag == tag)
                .and_then(|v| v.value.clone())
        };
        assert_eq!(get("val/miou"), Some(ValueKind::SimpleValue(0.75)));
        assert_eq!(get("val/iou/background"), Some(ValueKind::SimpleValue(0.5)));
        assert_eq!(get("val/iou/cell"), None, "an absent class has no point");
        assert!(
            matches!(get("val/overlay/3"), Some(ValueKind::Image(i)) if i.encoded_image_string == png)
        );
        // A flipped byte is caught by the CRC.
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(read_events(&path).unwrap_err().to_string().contains("CRC"));
    }
}
