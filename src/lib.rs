//! ledgerx: the Rust core (`core`, no Python) and its PyO3 binding (`py`, feature `python`).

pub mod core;

#[cfg(feature = "python")]
mod py;
