//! initagent: the early-boot agent for diskless, network-booted nodes. It runs as PID 1
//! in the initramfs (stage 1), as zinit oneshot steps, and as an operator's debugging
//! tool; `main.rs` only picks the mode.
//!
//! Module map: `config` (command line + profile → typed configuration), `report` (the
//! boot report and its rendering), `stage1` (the PID-1 orchestrator and its steps),
//! `logging` (kmsg + stderr), `mountinfo` (pure mount table reader), `sys` (every kernel
//! call and every `unsafe`), `cli` (subcommands).

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
pub mod report;
pub mod stage1;
pub mod sys;
