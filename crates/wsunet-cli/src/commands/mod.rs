//! One module per subcommand.

pub mod bench;
pub mod data;
pub mod eval;
pub mod info;
pub mod interop;
pub mod predict;
pub mod synth;
pub mod train;
