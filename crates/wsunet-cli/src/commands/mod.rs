//! One module per subcommand.

/// The library's error with the command-line flag that fixes it, where the
/// library (which speaks of config fields) cannot name one.
pub fn with_flags(e: wsunet::Error) -> anyhow::Error {
    use wsunet::Error;
    let flags = match &e {
        Error::RunExists { dir } => {
            format!("fix --out, or continue with --resume {}", dir.display())
        }
        Error::RunFinished { done, .. } => format!("pass --epochs N (more than {done})"),
        Error::NonFiniteLoss { .. } => "fix --lr or --grad-clip".into(),
        Error::BadSamples { .. } => "fix the files, or pass --skip-bad".into(),
        _ => return e.into(),
    };
    anyhow::Error::new(e).context(flags)
}

pub mod bench;
pub mod data;
pub mod eval;
pub mod info;
pub mod interop;
pub mod predict;
pub mod synth;
pub mod train;
