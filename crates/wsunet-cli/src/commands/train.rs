//! `wsunet train`: resolves the config from defaults, --config and flags,
//! then runs (or resumes) training with progress output.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use wsunet::WsResUNetConfig;
use wsunet::train::{Session, TrainConfig, model_from_file, preset};

use super::{Settings, with_fix};
use crate::cli::TrainArgs;
use crate::progress::TrainProgress;

/// The next free `runs/run-NNN`.
fn next_run_dir() -> PathBuf {
    (1..)
        .map(|i| Path::new("runs").join(format!("run-{i:03}")))
        .find(|p| !p.exists())
        .expect("a free run number")
}

/// Defaults, then the config file, then every flag given.
fn resolve(args: &TrainArgs) -> Result<TrainConfig> {
    let mut c = match &args.config {
        Some(path) => TrainConfig::from_file(path).context("fix --config")?,
        None => TrainConfig::default(),
    };
    if let Some(name) = &args.preset {
        // The architecture only: channels and classes stay the config's.
        c.model = WsResUNetConfig {
            in_channels: c.model.in_channels,
            num_classes: c.model.num_classes,
            ..preset(name).context("fix --preset")?
        };
    }
    if let Some(path) = &args.model_config {
        c.model = model_from_file(path).context("fix --model-config")?;
    }
    if args.data.is_some() {
        c.data = args.data.clone();
    }
    macro_rules! set {
        ($($field:ident),*) => { $(if let Some(v) = &args.$field { c.$field = v.clone(); })* };
    }
    set!(
        epochs,
        val_every,
        batch_size,
        lr,
        min_lr,
        warmup_epochs,
        weight_decay,
        seed,
        device,
        val_fraction
    );
    if args.size.is_some() {
        c.size = args.size;
    }
    if let Some(v) = args.batch_size {
        c.val_batch_size = v;
    }
    if args.grad_clip.is_some() {
        c.grad_clip = args.grad_clip;
    }
    if args.class_weights.is_some() {
        c.class_weights = args.class_weights.clone();
    }
    if let Some(n) = args.num_classes {
        c.num_classes = Some(n);
        c.model.num_classes = n;
    }
    if let Some(ignore) = args.ignore_index {
        c.ignore_index = ignore.0;
    }
    if args.skip_bad {
        c.skip_bad = true;
    }
    if let Some(v) = args.optimizer {
        c.optimizer = v;
    }
    if let Some(v) = args.schedule {
        c.schedule = v;
    }
    if let Some(v) = args.loss {
        c.loss = v;
    }
    Ok(c)
}

/// Ctrl-C presses seen since training started.
static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

/// A run stopped on request (Ctrl-C) after a checkpointed epoch; `main`
/// prints it as it is and exits with 130, the shell's code for SIGINT.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// First Ctrl-C: finish and checkpoint the current epoch, then stop (the
/// trainer asks the observer after each epoch). Second: quit at once; the
/// checkpoint of the last finished epoch is intact (writes are atomic).
fn stop_on_ctrl_c(run: &Path) -> Result<()> {
    let run = run.display().to_string();
    ctrlc::set_handler(move || {
        if INTERRUPTS.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!(
                "\nCtrl-C: stopping once this epoch is finished and checkpointed; press Ctrl-C again to quit now"
            );
        } else {
            eprintln!(
                "\nquit; the last finished epoch is checkpointed, continue with: wsunet train --resume {run}"
            );
            std::process::exit(130);
        }
    })
    .context("cannot install the Ctrl-C handler")
}

pub fn run(args: TrainArgs) -> Result<()> {
    let settings = match &args.resume {
        Some(dir) => Settings::run(dir),
        None => Settings::flags::<TrainArgs>(),
    };
    let fix = |e| with_fix(e, &settings);
    let session = match &args.resume {
        // clap has refused every other setting next to --resume (see cli.rs).
        Some(dir) => Session::resume(dir, args.epochs, args.device.as_deref())
            .map_err(fix)
            .context("cannot resume (fix --resume, --epochs or --device)")?,
        None => {
            let config = resolve(&args)?;
            let dir = args.out.clone().unwrap_or_else(next_run_dir);
            Session::new(config, &dir).map_err(fix)?
        }
    };
    // Before anything is printed: a Ctrl-C once the run is announced stops
    // it cleanly rather than killing the process.
    stop_on_ctrl_c(&session.dir)?;
    let c = &session.config;
    let data = match &c.data {
        Some(d) => d.display().to_string(),
        None => format!(
            "built-in shapes ({} train / {} val, {}×{})",
            c.shapes.train, c.shapes.val, c.shapes.size, c.shapes.size
        ),
    };
    println!("run directory {}", session.dir.display());
    println!(
        "data {data}: {} train, {} val samples, {} classes, {} channel(s)",
        session.train.samples().len(),
        session.val.samples().len(),
        session.card.model.num_classes,
        session.card.model.in_channels
    );
    println!(
        "model widths {:?} depths {:?} ({} standardization); {} epochs, batch {}, crop {}×{} ({}), {:?} lr {:.1e}, {} loss, device {}",
        session.card.model.widths,
        session.card.model.depths,
        session.card.model.standardization,
        c.epochs,
        c.batch_size,
        c.crop()[0],
        c.crop()[1],
        session.crop_note,
        c.optimizer,
        c.lr,
        c.loss,
        super::announce(&session.device)
    );
    let mut progress = TrainProgress::new(&INTERRUPTS);
    let summary = session.run(&mut progress).map_err(fix)?;
    if summary.stopped {
        return Err(Interrupted(format!(
            "stopped after epoch {} of {} (Ctrl-C); every finished epoch is checkpointed, continue with: wsunet train --resume {}",
            summary.state.epoch,
            session.config.epochs,
            session.dir.display()
        ))
        .into());
    }
    println!("\nvalidation, last epoch:\n{}", summary.scores.table());
    if let Some((epoch, miou)) = summary.state.best {
        println!("best mIoU {:.2}% at epoch {epoch} (best.bpk)", 100.0 * miou);
    }
    println!(
        "trained in {:.1} s; model: {} (with {})",
        summary.seconds,
        session.dir.join("model.bpk").display(),
        session.dir.join("model.json").display()
    );
    Ok(())
}
