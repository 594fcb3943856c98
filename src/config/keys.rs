//! The table of `initagent.*` keys: name, meaning, how a raw value becomes a typed one.
//! The same names are used in the profile file (without the prefix) and documented in
//! `docs/cmdline.md` (a unit test keeps the two in step).

use super::cmdline::split_argv;
use super::{Config, FailurePolicy, LogLevel, RawValue};

/// One configuration key.
pub struct KeyDef {
    /// Name after `initagent.` (and the profile key).
    pub name: &'static str,
    /// One line for `initagent config --keys`.
    pub help: &'static str,
    /// Parses the raw value into the configuration, or says why it cannot.
    pub apply: fn(&mut Config, &RawValue) -> Result<(), String>,
    /// Renders the current value (used to say what was kept).
    pub show: fn(&Config) -> String,
}

/// Every key the agent understands.
pub const KEYS: &[KeyDef] = &[
    KeyDef {
        name: "log",
        help: "log level: error, warn, info (default), debug, trace",
        apply: |config, raw| {
            config.log_level = match text(raw)? {
                "error" => LogLevel::Error,
                "warn" | "warning" => LogLevel::Warn,
                "info" => LogLevel::Info,
                "debug" => LogLevel::Debug,
                "trace" => LogLevel::Trace,
                _ => return Err("not a log level (error, warn, info, debug, trace)".into()),
            };
            Ok(())
        },
        show: |config| format!("{:?}", config.log_level).to_lowercase(),
    },
    KeyDef {
        name: "on_failure",
        help: "when stage 1 cannot go on: shell (rescue shell, then reboot), reboot, halt",
        apply: |config, raw| {
            config.on_failure = match text(raw)? {
                "shell" => FailurePolicy::Shell,
                "reboot" => FailurePolicy::Reboot,
                "halt" => FailurePolicy::Halt,
                _ => return Err("not a failure policy (shell, reboot, halt)".into()),
            };
            Ok(())
        },
        show: |config| format!("{:?}", config.on_failure).to_lowercase(),
    },
    KeyDef {
        name: "reboot_delay",
        help: "seconds of countdown before a failure reboot (0-86400, default 30)",
        apply: |config, raw| {
            let seconds: u32 = text(raw)?
                .parse()
                .map_err(|_| "not a whole number of seconds".to_string())?;
            if seconds > 86_400 {
                return Err("more than a day".into());
            }
            config.reboot_delay_s = seconds;
            Ok(())
        },
        show: |config| config.reboot_delay_s.to_string(),
    },
    KeyDef {
        name: "handoff",
        help: "the next init and its arguments (default \"/sbin/zinit init\")",
        apply: |config, raw| {
            let argv = match raw {
                RawValue::List(items) => items.clone(),
                _ => {
                    let (words, anomalies) = split_argv(text(raw)?);
                    if let Some(anomaly) = anomalies.first() {
                        return Err(anomaly.to_string());
                    }
                    words
                }
            };
            match argv.first() {
                None => return Err("empty command".into()),
                Some(program) if !program.starts_with('/') => {
                    return Err("the program must be an absolute path".into())
                }
                Some(_) => {}
            }
            config.handoff = argv;
            Ok(())
        },
        show: |config| format!("{:?}", config.handoff.join(" ")),
    },
];

fn text(raw: &RawValue) -> Result<&str, String> {
    match raw {
        RawValue::Text(text) if !text.is_empty() => Ok(text),
        RawValue::Text(_) => Err("empty value".into()),
        RawValue::Flag => Err("needs a value".into()),
        RawValue::List(_) => Err("needs a single value, not a list".into()),
    }
}
