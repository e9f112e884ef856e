//! Training and evaluation: losses, dataset-level metrics, schedules,
//! deterministic batching, checkpoints and the training loop.

pub(crate) mod checkpoint;
pub(crate) mod config;
pub(crate) mod confusion;
pub(crate) mod curves;
pub(crate) mod eval_split;
pub(crate) mod evaluate;
pub(crate) mod loader;
pub(crate) mod loss;
pub(crate) mod observer;
pub(crate) mod optim;
pub(crate) mod pace;
pub(crate) mod plan;
pub(crate) mod schedule;
pub(crate) mod state;
pub mod tensorboard;
pub(crate) mod trainer;

pub use config::{
    Choice, FROM_DATA, OptimizerKind, PRESETS, ShapesSpec, TrainConfig, model_from_file, preset,
    run_config_of,
};
pub use confusion::{ClassScore, ConfusionMatrix, SegScores};
pub use eval_split::{EvalRequest, EvalSamples, Holdout, eval_samples};
pub use evaluate::{Evaluation, Scorer};
pub use loss::{LossKind, SegLoss};
pub use observer::{Observer, Silent};
pub use optim::{FusedAdamW, default_optimizer};
pub use pace::{Pace, duration_words, parse_duration};
pub use plan::{
    Fingerprint, Given, MIN_EPOCHS, Plan, SMALL_BATCH, SMALL_DATASET, STEP_BUDGET, VALIDATIONS,
};
pub use schedule::{LrSchedule, ScheduleKind};
pub use state::{EpochRecord, TrainState};
pub use trainer::{Session, TrainSummary};
