//! `wsunet bench`: whole-model speed, as a table or JSON.

use anyhow::{Context, Result};
use wsunet::bench::{BenchConfig, run_bench};

use crate::cli::BenchArgs;
use crate::commands::announce;
use crate::commands::info::model_config;

/// `--threads` is applied in `main` (the thread pool starts before any
/// command runs).
pub fn run(args: BenchArgs) -> Result<()> {
    let model = model_config(&args.model)?;
    let device = wsunet::parse_device(&args.device).context("fix --device")?;
    let config = BenchConfig {
        model,
        batch: args.batch_size,
        size: args.size,
        warmup: args.warmup,
        reps: args.reps,
        standardize: !args.no_ws,
        phases: args.phases.clone(),
    };
    // stdout may be JSON: the device line goes with the progress lines.
    let info = announce(&device);
    if !args.json {
        eprintln!("device {info}");
    }
    let report = run_bench(&config, &device, &info.to_string(), &mut |phase| {
        if !args.json {
            eprintln!("measuring {phase} …");
        }
    })
    .context("fix --batch-size, --reps, --size, --phases or --model-config")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
