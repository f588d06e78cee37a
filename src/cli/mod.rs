//! The operator commands of the `switchyard` binary (`instances`, `subscriptions`, `replay`,
//! `redrive`, `deliveries`, `tail`): clients of a running server's HTTP API, one file per command.
//!
//! Every command resolves the server and key the same way ([`client::ServerArgs`]), prints a
//! table for people or, with `--json`, one JSON document on stdout for scripts; progress
//! goes to stderr ([`progress`]), and an error exits non-zero with the server's error
//! envelope spelled out (with `--json`, the envelope itself is also printed on stdout).

pub mod client;
pub mod deliveries;
pub mod instances;
pub mod progress;
pub mod redrive;
pub mod replay;
pub mod subscriptions;
pub mod table;
pub mod tail;

use serde_json::Value;

pub use client::{ApiFailure, Client, ServerArgs};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No `--apikey`, no AUTHENTICATION_API_KEY, and no stored key to fall back on.
    #[error("no API key: pass --apikey or set AUTHENTICATION_API_KEY (none stored in {path})")]
    NoKey {
        /// The stored key's path.
        path: &'static str,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The server could not be reached, or the connection broke.
    #[error("cannot reach {url}")]
    Unreachable {
        /// What was requested.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{0}")]
    Api(ApiFailure),
    /// The server answered something this client does not understand.
    #[error("unexpected answer: {what}")]
    Unexpected {
        /// What was wrong with it.
        what: String,
    },
    /// An option's value is wrong.
    #[error("{0}")]
    Usage(String),
    /// `--wait` gave up at its `--timeout`.
    #[error("{what} after {seconds} s (--timeout)")]
    TimedOut {
        /// What was still not done.
        what: String,
        /// The timeout.
        seconds: f64,
    },
    /// Redriven events failed again and are dead letters once more.
    #[error("{failed} of {redriven} redriven events failed again and are dead letters once more")]
    FailedAgain {
        /// How many failed again.
        failed: usize,
        /// How many were redriven.
        redriven: usize,
    },
}

/// Where a command's results go: a table for people, or one JSON document for scripts.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// `--json` was given.
    pub json: bool,
}

impl Output {
    /// Prints `value` on stdout when `--json` was given, and otherwise the human rendering
    /// `human` makes of it.
    pub fn emit(&self, value: &Value, human: impl FnOnce(&Value) -> String) {
        if self.json {
            println!("{value}");
        } else {
            print!("{}", human(value));
        }
    }

    /// Passes `result` on; with `--json`, an error answer's envelope is first printed on
    /// stdout as the server sent it, so a script reads its `code` from the same place it
    /// would have read the result (the exit status still says it failed).
    pub fn finish(&self, result: Result<(), CliError>) -> Result<(), CliError> {
        if self.json {
            if let Err(CliError::Api(ApiFailure {
                body: Some(body), ..
            })) = &result
            {
                println!("{body}");
            }
        }
        result
    }
}

/// Adds `field` to a JSON object under `key` (an answer that is not an object is left as
/// it is: indexing one to insert would panic).
pub fn insert(value: &mut Value, key: &str, field: Value) {
    if let Some(fields) = value.as_object_mut() {
        fields.insert(key.to_string(), field);
    }
}
