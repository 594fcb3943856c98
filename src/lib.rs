//! initagent: the early-boot agent for diskless, network-booted nodes. It runs as PID 1
//! in the initramfs (stage 1), as zinit oneshot steps, and as an operator's debugging
//! tool; `main.rs` only picks the mode.
//!
//! Module map: `config` (command line + profile → typed configuration), `report` (the
//! boot report and its rendering), `stage1` (the PID-1 orchestrator and its steps),
//! `logging` (kmsg + stderr), `mountinfo` (pure mount table reader), `sys` (every kernel
//! call and every `unsafe`), `cli` (subcommands), `redact` (the one rule that keeps
//! credentials out of every output).
//!
//! Commands print through `cli::out` (masked); the logger masks its own lines. Nothing
//! else writes to the terminal:
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod cachedev;
pub mod cli;
pub mod coldplug;
pub mod config;
pub mod depmod;
pub mod flist;
pub mod fsutil;
pub mod kmod;
pub mod logging;
pub mod mountinfo;
pub mod net;
pub mod redact;
pub mod report;
pub mod rundir;
pub mod stage1;
pub mod step;
pub mod sys;

/// What the unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;

    /// An empty directory of this test run: `initagent-<name>-<pid>` under the temporary
    /// directory.
    pub fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("initagent-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
