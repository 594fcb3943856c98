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
