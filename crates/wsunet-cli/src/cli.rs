//! The command line's top level (clap derive): the list of commands. Each
//! command's arguments, help and run live in `commands/`; the argument types
//! they share in `args.rs`.

use clap::{Parser, Subcommand};

use crate::commands::{bench, data, eval, info, interop, predict, study, synth, train};

/// wsunet: weight-standardized residual U-Nets for semantic segmentation.
///
/// A WS+GroupNorm residual U-Net (WSResUNet) in one native binary: check a
/// dataset, train on it, evaluate, segment images of any size, measure
/// speed, and move weights to and from PyTorch, on the CPU or a GPU.
#[derive(Debug, Parser)]
#[command(name = "wsunet", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(about = info::ABOUT)]
    Info(info::InfoArgs),

    #[command(about = synth::ABOUT)]
    Synth(synth::SynthArgs),

    #[command(subcommand)]
    #[command(about = data::ABOUT)]
    Data(data::DataCommand),

    #[command(about = train::ABOUT, long_about = train::LONG_ABOUT)]
    Train(Box<train::TrainArgs>),

    #[command(about = train::PLAN_ABOUT, long_about = train::PLAN_LONG_ABOUT)]
    Plan(Box<train::TrainArgs>),

    #[command(about = eval::ABOUT, long_about = eval::LONG_ABOUT)]
    Eval(eval::EvalArgs),

    #[command(about = predict::ABOUT)]
    Predict(predict::PredictArgs),

    #[command(about = bench::ABOUT)]
    Bench(bench::BenchArgs),

    #[command(about = study::ABOUT, long_about = study::LONG_ABOUT)]
    Study(Box<study::StudyArgs>),

    #[command(about = interop::IMPORT_ABOUT)]
    Import(interop::ImportArgs),

    #[command(about = interop::EXPORT_ABOUT)]
    Export(interop::ExportArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::IgnoreIndex;
    use clap::CommandFactory;
    use wsunet::train::{OptimizerKind, TrainConfig};

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ignore_index_flag() {
        let cli = Cli::try_parse_from(["wsunet", "data", "check", "d", "--ignore-index", "none"])
            .unwrap();
        let Command::Data(data::DataCommand::Check(args)) = cli.command else {
            panic!("parsed the wrong command")
        };
        assert_eq!(args.ignore_index, IgnoreIndex(None));
    }
    #[test]
    fn resume_refuses_every_setting_but_epochs_and_device() {
        let command = Cli::command();
        let train = command.find_subcommand("train").unwrap();
        let mut checked = 0;
        for arg in train.get_arguments() {
            let id = arg.get_id().as_str();
            let Some(long) = arg.get_long() else { continue };
            if ["resume", "help", "version"].contains(&id) {
                continue;
            }
            let flag = format!("--{long}");
            let choices = arg.get_possible_values();
            let value = choices.first().map_or("1", |v| v.get_name());
            let mut argv = vec!["wsunet", "train", "--resume", "runs/a", flag.as_str()];
            if arg.get_action().takes_values() {
                argv.push(value);
            }
            let parsed = Cli::try_parse_from(&argv);
            if ["epochs", "device"].contains(&id) {
                assert!(parsed.is_ok(), "{flag} must be allowed with --resume");
            } else {
                let err = parsed.expect_err(&flag);
                assert_eq!(
                    err.kind(),
                    clap::error::ErrorKind::ArgumentConflict,
                    "{flag}: {err}"
                );
                // The flag given is named, and only it.
                let named = format!("cannot be used with '{flag}");
                assert!(err.to_string().contains(&named), "{err}");
                checked += 1;
            }
        }
        assert!(checked >= 20, "only {checked} settings checked");
    }

    #[test]
    fn float_flags_refuse_nan() {
        let e = Cli::try_parse_from(["wsunet", "train", "--grad-clip", "nan"]).unwrap_err();
        assert!(e.to_string().contains("not a finite number"), "{e}");
    }

    fn resolved(argv: &[&str]) -> TrainConfig {
        let cli = Cli::try_parse_from([&["wsunet", "train"], argv].concat()).unwrap();
        let Command::Train(args) = cli.command else {
            panic!("parsed the wrong command")
        };
        train::resolve(&args).unwrap()
    }

    #[test]
    fn flags_replace_their_fields_and_nothing_else() {
        let defaults = TrainConfig::default();
        assert_eq!(resolved(&[]), defaults);
        let c = resolved(&[
            "--batch-size",
            "3",
            "--lr",
            "0.01",
            "--optimizer",
            "sgd",
            "--crop",
            "64x96",
            "--ignore-index",
            "none",
            "--num-classes",
            "5",
            "--skip-bad",
            "--device",
            "cpu",
        ]);
        assert_eq!(
            (c.batch_size, c.lr, c.optimizer),
            (3, 0.01, OptimizerKind::Sgd)
        );
        assert_eq!((c.crop, c.ignore_index), (Some([64, 96]), None));
        assert_eq!((c.num_classes, c.model.num_classes), (Some(5), 5));
        assert!(c.skip_bad);
        // --batch-size is the training batch only.
        assert_eq!(c.val_batch_size, defaults.val_batch_size);
        let c = resolved(&["--val-batch-size", "2"]);
        assert_eq!((c.batch_size, c.val_batch_size), (defaults.batch_size, 2));
        // Flags win over --config; its other fields stay.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.json");
        std::fs::write(&file, r#"{"epochs": 7, "batch_size": 5, "seed": 9}"#).unwrap();
        let c = resolved(&["--config", file.to_str().unwrap(), "--batch-size", "2"]);
        assert_eq!((c.epochs, c.batch_size, c.seed), (7, 2, 9));
    }
}
