//! Training and evaluation: losses, dataset-level metrics, schedules,
//! deterministic batching, checkpoints and the training loop.

pub mod checkpoint;
pub mod config;
pub mod confusion;
mod curves;
pub mod loader;
pub mod loss;
pub mod metric;
pub mod schedule;
pub mod trainer;

pub use config::{ModelSpec, OptimizerKind, PRESETS, ShapesSpec, TrainConfig};
pub use confusion::{ClassScore, ConfusionMatrix, SegScores};
pub use loss::{LossKind, SegLoss};
pub use schedule::{LrSchedule, ScheduleKind};
pub use trainer::{
    EpochRecord, Evaluation, Observer, Session, Silent, Split, TrainState, TrainSummary,
    default_optimizer, evaluate, resolve_crop, run_config_of, split_samples,
};
