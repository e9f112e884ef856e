//! The `wsunet` command. The list of commands is [`cli`], each command in
//! [`commands`], the arguments they share in [`args`]; errors reach the user
//! as one `error:` line and exit code 1.

mod args;
mod cli;
mod commands;
mod progress;

use clap::Parser;

// Tensors of several MiB are allocated and freed on every step; the system
// allocator hands those back to the OS each time (page faults and zeroing on
// every reuse), mimalloc keeps them: 10-15 % faster steps, measured.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys
/// names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Stops mimalloc from returning freed pages to the OS 10 ms after a free:
/// a training step frees and re-allocates the same few hundred MiB, and each
/// purge made the kernel fault and zero those pages again (sys time 1.4 →
/// 0.4 s over a 7-step bench, train step ~6 % faster). Peak memory is
/// unchanged; `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn keep_freed_pages() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

/// Gives wgpu's window-system probe a runtime directory when the session
/// has none (a service, CI, ssh without a login session): listing adapters
/// loads libwayland, which prints `XDG_RUNTIME_DIR is invalid or not set`
/// for every graphics instance otherwise. The directory is only read.
#[cfg(all(target_os = "linux", any(feature = "wgpu", feature = "vulkan")))]
fn quiet_window_system_probe() {
    let valid = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| {
        std::path::Path::new(&d).is_absolute() && std::path::Path::new(&d).is_dir()
    });
    if !valid {
        // SAFETY: the first statement of `main`, before any thread exists,
        // so nothing reads the environment concurrently.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
}

#[cfg(not(all(target_os = "linux", any(feature = "wgpu", feature = "vulkan"))))]
fn quiet_window_system_probe() {}

/// Starts rayon's thread pool with this thread as one of its workers (index
/// 0), so the compute kernels' parallel loops run on the calling thread and
/// one fewer thread has to be woken; the serial parts of a step then leave
/// no worker idle-spinning beside a sleeping caller. Measured on the default
/// train step: 269 → 255 ms, 155 → 170 % CPU on 2 cores. `threads`: the
/// pool's size (default: all cores).
fn start_thread_pool(threads: Option<usize>) -> anyhow::Result<()> {
    if threads == Some(0) {
        anyhow::bail!("--threads 0; give at least 1");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .use_current_thread()
        .build_global()
        .map_err(|e| anyhow::anyhow!("cannot start the thread pool: {e}"))
}

/// The error and its causes on one line, `: `-separated, leaving out a cause
/// whose text its parent already shows (the library's I/O errors print
/// their source and also return it, for callers that match on it).
fn message(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Ends the process quietly when stdout's reader goes away
/// (`wsunet plan | head`), as Unix tools do: Rust ignores SIGPIPE, so every
/// `println!` after it would panic instead.
#[cfg(unix)]
fn die_on_closed_pipe() {
    // SAFETY: sets one signal's disposition to the default, before any
    // other thread exists; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn die_on_closed_pipe() {}

fn main() -> std::process::ExitCode {
    die_on_closed_pipe();
    quiet_window_system_probe();
    keep_freed_pages();
    let cli = cli::Cli::parse();
    let threads = match &cli.command {
        cli::Command::Bench(args) => args.threads,
        _ => None,
    };
    let result = start_thread_pool(threads).and_then(|()| match cli.command {
        cli::Command::Info(args) => commands::info::run(args),
        cli::Command::Synth(args) => commands::synth::run(args),
        cli::Command::Data(command) => commands::data::run(command),
        cli::Command::Train(args) => commands::train::run(*args),
        cli::Command::Plan(args) => commands::train::run(commands::train::TrainArgs {
            plan_only: true,
            ..*args
        }),
        cli::Command::Study(args) => commands::study::run(*args),
        cli::Command::Eval(args) => commands::eval::run(args),
        cli::Command::Predict(args) => commands::predict::run(args),
        cli::Command::Bench(args) => commands::bench::run(args),
        cli::Command::Import(args) => commands::interop::import(args),
        cli::Command::Export(args) => commands::interop::export(args),
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<commands::train::Interrupted>() {
            Some(stopped) => {
                eprintln!("{stopped}");
                std::process::ExitCode::from(130)
            }
            None => {
                eprintln!("error: {}", message(&e));
                std::process::ExitCode::FAILURE
            }
        },
    }
}
