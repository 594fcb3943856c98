//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod kernel;
pub mod servers;
pub mod vm;

/// A fresh scratch directory under target/ for one test.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = vm::repo_root().join("target/scratch").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fixtures made by the real rfs (`../shared/fixtures`).
pub fn fixtures() -> std::path::PathBuf {
    vm::repo_root()
        .join("../shared/fixtures")
        .canonicalize()
        .expect("../shared/fixtures")
}

/// Runs the agent built for these tests and collects its output.
pub fn agent(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_initagent"))
        .args(args)
        .output()
        .unwrap()
}
