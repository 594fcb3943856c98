//! What the running kernel says of a module, read from `/sys/module` the way kmod reads it
//! (`kmod_module_get_initstate`, `_refcnt`, `_holders`), behind a small trait so that
//! modprobe's decisions are tested on a tree of files.

use std::path::PathBuf;

/// A module's state as kmod names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitState {
    /// Loaded and initialised (`initstate` says `live`).
    Live,
    /// Its init is running, or (no `initstate` file but a directory) what kmod 30 also
    /// calls coming.
    Coming,
    /// Being removed.
    Going,
    /// Built into the kernel (by the tree's `modules.builtin`; the caller decides).
    Builtin,
}

/// The running kernel's modules.
pub trait Live {
    /// `None`: not in the kernel (kmod's negative answer).
    fn initstate(&self, name: &str) -> Option<InitState>;
    /// Its use count; `None` when the kernel shows none (built in, or absent).
    fn refcnt(&self, name: &str) -> Option<u64>;
    /// The modules that use it.
    fn holders(&self, name: &str) -> Vec<String>;
}

/// `/sys/module` (or a copy of its shape under another directory).
pub struct SysModule {
    pub dir: PathBuf,
}

impl Default for SysModule {
    fn default() -> Self {
        SysModule {
            dir: PathBuf::from("/sys/module"),
        }
    }
}

impl Live for SysModule {
    fn initstate(&self, name: &str) -> Option<InitState> {
        let dir = self.dir.join(name);
        match std::fs::read_to_string(dir.join("initstate")) {
            Ok(text) => match text.trim() {
                "live" => Some(InitState::Live),
                "coming" => Some(InitState::Coming),
                "going" => Some(InitState::Going),
                _ => None,
            },
            Err(_) if dir.is_dir() => Some(InitState::Coming),
            Err(_) => None,
        }
    }

    fn refcnt(&self, name: &str) -> Option<u64> {
        std::fs::read_to_string(self.dir.join(name).join("refcnt"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn holders(&self, name: &str) -> Vec<String> {
        let mut holders: Vec<String> = std::fs::read_dir(self.dir.join(name).join("holders"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        holders.sort();
        holders
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_counts_and_holders_come_from_the_files() {
        let dir = std::env::temp_dir().join(format!("initagent-live-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, state, refcnt) in [("a", Some("live\n"), Some("2\n")), ("b", None, None)] {
            std::fs::create_dir_all(dir.join(name).join("holders")).unwrap();
            if let Some(state) = state {
                std::fs::write(dir.join(name).join("initstate"), state).unwrap();
            }
            if let Some(refcnt) = refcnt {
                std::fs::write(dir.join(name).join("refcnt"), refcnt).unwrap();
            }
        }
        std::fs::create_dir_all(dir.join("a/holders/c")).unwrap();
        let live = SysModule { dir: dir.clone() };
        assert_eq!(live.initstate("a"), Some(InitState::Live));
        assert_eq!(live.initstate("b"), Some(InitState::Coming));
        assert_eq!(live.initstate("none"), None);
        assert_eq!(live.refcnt("a"), Some(2));
        assert_eq!(live.refcnt("b"), None);
        assert_eq!(live.holders("a"), vec!["c".to_string()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
