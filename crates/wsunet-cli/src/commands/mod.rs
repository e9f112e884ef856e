//! One module per subcommand.

/// The library's error with the command-line flag that fixes it, where the
/// library (which speaks of config fields) cannot name one. `A` is the
/// command's arguments: a setting's field becomes its flag when the command
/// has one (`batch_size` → `--batch-size`), else the `--config` field.
pub fn with_flags<A: clap::Args>(e: wsunet::Error) -> anyhow::Error {
    use wsunet::Error;
    let flags = match &e {
        Error::RunExists { dir } => {
            format!("fix --out, or continue with --resume {}", dir.display())
        }
        Error::RunFinished { done, .. } => format!("pass --epochs N (more than {done})"),
        Error::NonFiniteLoss { .. } => "fix --lr or --grad-clip".into(),
        Error::BadSamples { .. } => "fix the files, or pass --skip-bad".into(),
        Error::NotAFolder { .. }
        | Error::MissingFolder { .. }
        | Error::NoValFolder { .. }
        | Error::EmptySplit { .. } => "fix --data".into(),
        Error::Model { .. } => "fix --model-config or --preset".into(),
        Error::Setting { field, .. } => format!("fix {}", flag_for::<A>(field)),
        _ => return e.into(),
    };
    anyhow::Error::new(e).context(flags)
}

/// The flag of `A` that sets config `field`, or the field in `--config`.
fn flag_for<A: clap::Args>(field: &str) -> String {
    let top = field.split(['.', '[']).next().unwrap_or(field);
    let command = A::augment_args(clap::Command::new("wsunet"));
    let has = |long: &str| command.get_arguments().any(|a| a.get_long() == Some(long));
    let long = top.replace('_', "-");
    match top {
        "model" if has("model-config") => "--model-config or --preset".into(),
        _ if has(&long) => format!("--{long}"),
        _ => format!("{field} in --config"),
    }
}

pub mod bench;
pub mod data;
pub mod eval;
pub mod info;
pub mod interop;
pub mod predict;
pub mod synth;
pub mod train;
