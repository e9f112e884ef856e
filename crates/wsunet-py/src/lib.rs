//! Python bindings of wsunet, built by maturin into the `wsunet` package
//! (`pip install ./crates/wsunet-py`): a second client of the library, next
//! to the command line. Nothing here decides a default or checks a setting
//! on its own: every default is the library's, and bad settings come back
//! with the library's messages.
//!
//! - `wsunet.load(path)` → [`Model`]: `.info`, `.predict(array, …)` (numpy
//!   in, numpy out, the GIL released while the network runs),
//!   `.predict_file(src, out_dir, …)` (TIFFs of any size streamed).
//! - `wsunet.train(out=…, data=…, **settings)`: the settings of
//!   `wsunet train`'s config file, validated by the library.
//! - Errors: `ValueError` for bad arguments and settings,
//!   `FileNotFoundError` for missing files, `wsunet.WsunetError` for the
//!   rest; each carries the library's message.
//!
//! Without the `python` feature (as in `cargo test --workspace`) the crate
//! is empty, so the workspace builds without a Python to link against.

#[cfg(feature = "python")]
mod python;
