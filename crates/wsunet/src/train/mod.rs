//! Training and evaluation: losses, dataset-level metrics, and the training
//! loop with checkpoints and exact resume.

pub mod confusion;
pub mod loss;

pub use confusion::{ClassScore, ConfusionMatrix, SegScores};
pub use loss::{LossKind, SegLoss};
