//! One module per subcommand.

use std::path::{Path, PathBuf};

/// Where the settings of a command come from: what an error tells the user
/// to fix.
pub enum Settings {
    /// The command's flags (and, for `train`, its `--config` file).
    Flags(Box<clap::Command>),
    /// A run directory's `config.json` (`train --resume`).
    Run(PathBuf),
}

impl Settings {
    /// The flags of the command whose arguments are `A`.
    pub fn flags<A: clap::Args>() -> Self {
        Settings::Flags(Box::new(A::augment_args(clap::Command::new("wsunet"))))
    }

    /// The settings of the run in `dir`.
    pub fn run(dir: &Path) -> Self {
        Settings::Run(dir.to_path_buf())
    }

    /// What to fix for config `field`: its flag (`batch_size` →
    /// `--batch-size`, `model.num_classes` → `--num-classes`), else the field
    /// in the `--config` file; for a resumed run, the field in its
    /// config.json (but `--epochs` and `--device`).
    fn fix(&self, field: &str) -> String {
        let command = match self {
            // --resume takes these two; the rest is the run's own.
            Settings::Run(_) if ["epochs", "device"].contains(&field) => {
                return format!("--{field}");
            }
            Settings::Run(dir) => {
                return format!("{field} in {}", wsunet::RunDir::new(dir).config().display());
            }
            Settings::Flags(command) => command,
        };
        let has = |long: &str| command.get_arguments().any(|a| a.get_long() == Some(long));
        let last = field.rsplit('.').next().unwrap_or(field).replace('_', "-");
        let top = field.split('.').next().unwrap_or(field);
        if has(&last) {
            format!("--{last}")
        } else if top == "model" && has("model-config") {
            "--model-config or --preset".into()
        } else if has("config") {
            format!("{field} in --config")
        } else {
            format!("the {field} setting")
        }
    }

    /// `text` from the library with each of `fields` (config field names)
    /// replaced by what sets it here: `leave out val_fraction` becomes
    /// `leave out --val-fraction`. Only whole words are replaced.
    pub fn speak(&self, text: &str, fields: &[&str]) -> String {
        let word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
        let mut out = text.to_string();
        for field in fields {
            let fix = self.fix(field);
            let mut done = String::new();
            let mut rest = out.as_str();
            while let Some(at) = rest.find(field) {
                let before = rest[..at].chars().next_back();
                let after = rest[at + field.len()..].chars().next();
                done.push_str(&rest[..at]);
                if before.is_some_and(word) || after.is_some_and(word) {
                    done.push_str(field);
                } else {
                    done.push_str(&fix);
                }
                rest = &rest[at + field.len()..];
            }
            done.push_str(rest);
            out = done;
        }
        out
    }

    /// How to turn on a boolean `field` (`skip_bad` → `pass --skip-bad`).
    fn set(&self, field: &str) -> String {
        let fix = self.fix(field);
        match fix.strip_prefix("--") {
            Some(flag) => format!("pass --{flag}"),
            None => format!("set {fix}"),
        }
    }
}

/// The library's error with what to fix, in the terms of `settings` (the
/// library speaks of config fields; a command has flags, a resumed run its
/// config.json).
pub fn with_fix(e: wsunet::Error, settings: &Settings) -> anyhow::Error {
    use wsunet::Error;
    let fix = match &e {
        Error::RunExists { dir } => {
            format!("fix --out, or continue with --resume {}", dir.display())
        }
        Error::RunFinished { done, .. } => format!("pass --epochs N (more than {done})"),
        Error::NonFiniteLoss { .. } => {
            format!(
                "fix {} or {}",
                settings.fix("lr"),
                settings.fix("grad_clip")
            )
        }
        Error::BadSamples { .. } => format!("fix the files, or {}", settings.set("skip_bad")),
        Error::EmptySplit {
            validation: true,
            skipped: false,
            ..
        } => format!(
            "fix {} or {}",
            settings.fix("data"),
            settings.fix("val_fraction")
        ),
        Error::NotAFolder { .. }
        | Error::MissingFolder { .. }
        | Error::NoValFolder { .. }
        | Error::EmptySplit { .. } => format!("fix {}", settings.fix("data")),
        Error::Device { .. } => format!("fix {}", settings.fix("device")),
        Error::PredictedBy { .. } | Error::UnrecordedOutputs { .. } => {
            "fix --out, or pass --overwrite".into()
        }
        Error::Model { field, .. } | Error::Setting { field, .. } => {
            format!("fix {}", settings.fix(field))
        }
        _ => return e.into(),
    };
    anyhow::Error::new(e).context(fix)
}

pub mod bench;
pub mod data;
pub mod eval;
pub mod info;
pub mod interop;
pub mod predict;
pub mod study;
pub mod synth;
pub mod train;

#[cfg(test)]
mod tests {
    use super::eval::EvalArgs;
    use super::predict::PredictArgs;
    use super::train::TrainArgs;
    use super::*;

    #[test]
    fn a_setting_is_fixed_by_its_flag_else_its_config_field() {
        let train = Settings::flags::<TrainArgs>();
        assert_eq!(train.fix("batch_size"), "--batch-size");
        assert_eq!(train.fix("model.num_classes"), "--num-classes");
        assert_eq!(train.fix("model.widths"), "--model-config or --preset");
        assert_eq!(train.fix("momentum"), "momentum in --config");
        assert_eq!(train.set("skip_bad"), "pass --skip-bad");
        assert_eq!(Settings::flags::<PredictArgs>().fix("overlap"), "--overlap");
        let eval = Settings::flags::<EvalArgs>();
        assert_eq!(eval.fix("val_fraction"), "--val-fraction");
        assert_eq!(
            eval.speak(
                "leave out val_fraction and seed (not my_seed or seed_x)",
                &["val_fraction", "seed"]
            ),
            "leave out --val-fraction and --seed (not my_seed or seed_x)"
        );
        assert_eq!(eval.fix("augment.scale"), "the augment.scale setting");
        // A resumed run: its own config.json, but for --epochs and --device.
        let run = Settings::run(Path::new("runs/run-001"));
        let config = Path::new("runs/run-001").join("config.json");
        assert_eq!(run.fix("lr"), format!("lr in {}", config.display()));
        assert_eq!(run.fix("epochs"), "--epochs");
        assert_eq!(
            run.set("skip_bad"),
            format!("set skip_bad in {}", config.display())
        );
    }
}
