//! How hbctl answers scripts: `--json` (a global flag) for results and
//! errors, and one exit status per kind of failure.
//!
//! | exit | `kind` | meaning |
//! |---|---|---|
//! | 0 | | done |
//! | 1 | `refused` | the daemon refused the request (its message says why and what to do) |
//! | 2 | `invalid_input` | the command line is wrong |
//! | 3 | `unreachable` | no daemon answers on the control socket, or mirrord not over the host link (or the link lost a request: its outcome is unknown) |
//! | 4 | `io`, `protocol` | the conversation broke off or was unreadable |

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use hbcore::jsonl::ClientError;
use indicatif::ProgressBar;
use serde::Serialize;

static JSON: AtomicBool = AtomicBool::new(false);

/// Exit status: the daemon refused.
pub const EXIT_REFUSED: u8 = 1;
/// Exit status: the command line is wrong.
pub const EXIT_INVALID_INPUT: u8 = 2;
/// Exit status: no daemon answers.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit status: the conversation broke off or was unreadable.
pub const EXIT_IO: u8 = 4;

/// Sets `--json` for the whole run.
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

/// Whether `--json` was given.
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// A request done: its sentence, or `{"ok": true, "message": ...}`.
pub fn done(message: &str) {
    if json() {
        crate::print::json(&serde_json::json!({ "ok": true, "message": message }));
    } else {
        println!("{message}");
    }
}

/// A progress bar, hidden under `--json` (only the result is printed).
pub fn bar(length: u64) -> ProgressBar {
    if json() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(length)
    }
}

/// The JSON error object.
#[derive(Serialize)]
struct ErrorBody<'a> {
    kind: &'a str,
    message: &'a str,
}

/// Prints a failure (as `{"error": {...}}` under `--json`, else on stderr)
/// and returns its exit status.
pub fn fail(kind: &str, message: &str, code: u8) -> ExitCode {
    if json() {
        crate::print::json(&serde_json::json!({ "error": ErrorBody { kind, message } }));
    } else {
        eprintln!("hbctl: {message}");
    }
    ExitCode::from(code)
}

/// Prints a client error and returns its exit status.
pub fn client_error(e: &ClientError) -> ExitCode {
    let (kind, code) = match e {
        ClientError::Refused(_) => ("refused", EXIT_REFUSED),
        ClientError::Connect { .. } | ClientError::Storage(_) => ("unreachable", EXIT_UNREACHABLE),
        ClientError::Io { .. } => ("io", EXIT_IO),
        ClientError::Protocol { .. } => ("protocol", EXIT_IO),
    };
    fail(kind, &hbcore::report::chain(e), code)
}

/// Handles a command line clap could not accept: help and version print as
/// usual; a usage error is an `invalid_input` failure.
pub fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    if std::env::args().any(|a| a == "--json") {
        set_json(true);
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or("invalid command line");
        let message = first.trim_start_matches("error: ");
        fail("invalid_input", message, EXIT_INVALID_INPUT)
    } else {
        let _ = e.print();
        ExitCode::from(EXIT_INVALID_INPUT)
    }
}
