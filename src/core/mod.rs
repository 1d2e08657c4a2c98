//! The Python-free core: log format, appender, schema validation and scanner.
//! Everything here is tested by `cargo test` without an interpreter.

pub mod appender;
pub mod builtin;
pub mod clock;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod ids;
pub mod json;
pub mod rules;
pub mod scanner;
pub mod sched;
pub mod schema;
pub mod schema_file;
#[cfg(test)]
mod testutil;
pub mod watch;
pub mod writer;

pub use error::{Error, Result};
