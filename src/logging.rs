//! The `log` facade's backend: `/dev/kmsg` (the durable record, read with `dmesg`) and
//! stderr (the console in stage 1, the terminal or zinit's log otherwise).
//!
//! Lines are prefixed `initagent:`, mapped to syslog levels, capped in length (the kernel
//! drops records past about 1 KiB) and rate-limited with a token bucket so that a storm
//! (FUSE errors, uevents, DHCP retries) cannot flood the console; the number of dropped
//! lines is reported when logging resumes. Formatting uses a fixed-size buffer: logging
//! does not allocate, except to mask credentials in a line that shows a URL.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Longest line written, prefix included; longer messages end in `…`.
pub const MAX_LINE: usize = 976;
/// Lines allowed in a burst before the limiter engages.
const BURST: f64 = 200.0;
/// Lines per second refilled after a burst.
const REFILL_PER_SECOND: f64 = 50.0;

type Line = heapless::String<MAX_LINE>;

struct Sinks {
    kmsg: Option<File>,
    /// Console log level: kmsg records below it are already printed on the console by
    /// the kernel, so stderr skips them in stage 1 to avoid every line showing twice.
    console_level: Option<u8>,
    tokens: f64,
    last_refill: Option<Instant>,
    dropped: u64,
}

struct Logger {
    sinks: Mutex<Sinks>,
}

static LOGGER: Logger = Logger {
    sinks: Mutex::new(Sinks {
        kmsg: None,
        console_level: None,
        tokens: BURST,
        last_refill: None,
        dropped: 0,
    }),
};

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs the logger (stderr only until [`attach_kmsg`]). Safe to call more than once.
pub fn init(level: log::LevelFilter) {
    if log::set_logger(&LOGGER).is_ok() {
        INSTALLED.store(true, Ordering::Relaxed);
    }
    log::set_max_level(level);
}

/// Whether [`init`] installed this logger.
pub fn is_installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Changes the level once the configuration is known.
pub fn set_level(level: log::LevelFilter) {
    log::set_max_level(level);
}

/// Starts writing to `/dev/kmsg` too. With `dedupe_console`, lines the kernel already
/// prints on the console (by `/proc/sys/kernel/printk`) are not repeated on stderr.
pub fn attach_kmsg(dedupe_console: bool) -> std::io::Result<()> {
    let kmsg = OpenOptions::new().write(true).open("/dev/kmsg")?;
    let console_level = if dedupe_console {
        std::fs::read_to_string("/proc/sys/kernel/printk")
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse().ok())
    } else {
        None
    };
    let mut sinks = lock(&LOGGER.sinks);
    sinks.kmsg = Some(kmsg);
    sinks.console_level = console_level;
    Ok(())
}

fn lock(sinks: &Mutex<Sinks>) -> std::sync::MutexGuard<'_, Sinks> {
    // A panic while logging must not silence the logger for good.
    sinks
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Syslog severity for a `log` level.
pub fn syslog_level(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// Formats one line into a fixed buffer: `initagent: message`, truncated with `…`,
/// control characters (newlines included) replaced by spaces, credentials in URLs masked
/// ([`crate::redact`]). A line with a URL in it is formatted whole and masked before it is
/// cut, so a cut never leaves half a secret unrecognised; only that path allocates.
pub fn format_line(args: &std::fmt::Arguments<'_>) -> Line {
    let line = capped(args);
    if !line.contains("://") {
        return line;
    }
    let whole = format!("{args}");
    capped(&format_args!("{}", crate::redact::text(&whole)))
}

fn capped(args: &std::fmt::Arguments<'_>) -> Line {
    let mut line = Line::new();
    let _ = line.push_str("initagent: ");
    let mut writer = Capped {
        line: &mut line,
        full: false,
    };
    let _ = write!(writer, "{args}");
    if writer.full {
        while line.len() + '…'.len_utf8() > MAX_LINE {
            line.pop();
        }
        let _ = line.push('…');
    }
    line
}

struct Capped<'a> {
    line: &'a mut Line,
    full: bool,
}

impl std::fmt::Write for Capped<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        for c in text.chars() {
            let c = if c.is_control() { ' ' } else { c };
            if self.line.push(c).is_err() {
                self.full = true;
                return Err(std::fmt::Error);
            }
        }
        Ok(())
    }
}

impl Sinks {
    fn admit(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last_refill {
            let refill = now.duration_since(last).as_secs_f64() * REFILL_PER_SECOND;
            self.tokens = (self.tokens + refill).min(BURST);
        }
        self.last_refill = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    fn emit(&mut self, level: log::Level, line: &str) {
        let severity = syslog_level(level);
        if let Some(kmsg) = self.kmsg.as_mut() {
            // One write is one record; "<N>" sets its severity (facility user = 1 << 3).
            let mut record: heapless::String<{ MAX_LINE + 8 }> = heapless::String::new();
            let _ = write!(record, "<{}>{}", 8 + severity, line);
            let _ = kmsg.write_all(record.as_bytes());
        }
        let on_console_already =
            self.kmsg.is_some() && self.console_level.is_some_and(|console| severity < console);
        if !on_console_already {
            let mut stderr = std::io::stderr().lock();
            let _ = stderr.write_all(line.as_bytes());
            let _ = stderr.write_all(b"\n");
        }
    }
}

/// Writes one line whatever the log level and the rate limit (the boot's summary): to the
/// kernel log at `level`, and to stderr when the kernel does not print it on the console.
pub fn always(level: log::Level, args: std::fmt::Arguments<'_>) {
    let line = format_line(&args);
    lock(&LOGGER.sinks).emit(level, &line);
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_line(record.args());
        let mut sinks = lock(&self.sinks);
        if !sinks.admit(Instant::now()) {
            return;
        }
        if sinks.dropped > 0 {
            let dropped = std::mem::take(&mut sinks.dropped);
            let note = format_line(&format_args!(
                "{dropped} log lines were suppressed (rate limit)"
            ));
            sinks.emit(log::Level::Warn, &note);
        }
        sinks.emit(record.level(), &line);
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn credentials_are_masked_even_where_the_line_is_cut() {
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let line = format_line(&format_args!("store s3s://AK:{secret}@h/b failed"));
        assert_eq!(line.as_str(), "initagent: store s3s://AK:***@h/b failed");
        // The '@' falls past the cap: masked from the whole message all the same.
        let pad = "x".repeat(MAX_LINE - 20);
        let line = format_line(&format_args!("{pad} s3://AK:{secret}{secret}@h/b"));
        assert!(!line.contains("wJalrX"), "{line}");
        assert!(line.ends_with('…'));
    }

    #[test]
    fn lines_are_prefixed_capped_and_single() {
        let line = format_line(&format_args!("a\nb"));
        assert_eq!(line.as_str(), "initagent: a b");
        let long = "x".repeat(5000);
        let line = format_line(&format_args!("{long}"));
        assert!(line.len() <= MAX_LINE);
        assert!(line.ends_with('…'));
    }

    #[test]
    fn limiter_drops_past_the_burst_and_refills() {
        let mut sinks = Sinks {
            kmsg: None,
            console_level: None,
            tokens: BURST,
            last_refill: None,
            dropped: 0,
        };
        let start = Instant::now();
        let admitted = (0..1000).filter(|_| sinks.admit(start)).count();
        assert_eq!(admitted, BURST as usize);
        assert_eq!(sinks.dropped, 1000 - BURST as u64);
        assert!(sinks.admit(start + Duration::from_secs(1)));
    }

    #[test]
    fn severities() {
        assert_eq!(syslog_level(log::Level::Error), 3);
        assert_eq!(syslog_level(log::Level::Trace), 7);
    }
}
