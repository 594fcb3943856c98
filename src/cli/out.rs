//! The commands' only way to the terminal: every line printed goes through the redaction
//! rule ([`crate::redact::text`]), so no credential reaches stdout or stderr whatever
//! produced the text. `println!` and friends are denied crate-wide (`lib.rs`).

use std::io::Write;

/// Writes `text` to stdout, credentials masked; a closed pipe is not an error.
pub(crate) fn stdout(text: &str) {
    let _ = std::io::stdout()
        .lock()
        .write_all(crate::redact::text(text).as_bytes());
}

/// Writes `text` to stderr, credentials masked.
pub(crate) fn stderr(text: &str) {
    let _ = std::io::stderr()
        .lock()
        .write_all(crate::redact::text(text).as_bytes());
}

/// `println!`, masked.
macro_rules! outln {
    () => { $crate::cli::out::stdout("\n") };
    ($($arg:tt)*) => { $crate::cli::out::stdout(&format!("{}\n", format_args!($($arg)*))) };
}

/// `print!`, masked.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::out::stdout(&format!($($arg)*)) };
}

/// `eprintln!`, masked.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::cli::out::stderr(&format!("{}\n", format_args!($($arg)*))) };
}
