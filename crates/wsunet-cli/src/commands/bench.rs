//! `wsunet bench`: whole-model speed, as a table or JSON.

use anyhow::{Context, Result, bail};
use wsunet::bench::{BenchConfig, run_bench};

use crate::cli::BenchArgs;
use crate::commands::info::model_config;

pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(threads) = args.threads {
        if threads == 0 {
            bail!("--threads 0; give at least 1");
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("cannot set --threads")?;
    }
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
    let report = run_bench(&config, &device, &args.device, &mut |phase| {
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
