//! Training and evaluation: losses, dataset-level metrics, schedules,
//! deterministic batching, checkpoints and the training loop.

pub mod checkpoint;
pub mod config;
pub mod confusion;
pub(crate) mod curves;
pub mod eval_split;
pub mod evaluate;
pub mod loader;
pub mod loss;
pub mod observer;
pub mod optim;
pub mod run_dir;
pub mod schedule;
pub mod state;
pub mod tensorboard;
pub mod trainer;

pub use config::{
    FROM_DATA, OptimizerKind, PRESETS, ShapesSpec, TrainConfig, model_from_file, preset,
};
pub use confusion::{ClassScore, ConfusionMatrix, SegScores};
pub use evaluate::{Evaluation, evaluate};
pub use loss::{LossKind, SegLoss};
pub use observer::{Observer, Silent};
pub use optim::default_optimizer;
pub use run_dir::{RunDir, run_config_of};
pub use schedule::{LrSchedule, ScheduleKind};
pub use state::{EpochRecord, TrainState};
pub use trainer::{Session, TrainSummary};
