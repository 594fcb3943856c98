//! The devices stage 1 reads once, early: after the bootstrap set has loaded, while the
//! network comes up, a thread binds the kernel's uevent socket and scans `/sys`
//! ([`crate::coldplug::Watch`]). The prefetch resolves the devices' drivers from that
//! scan, and coldplug starts from it, reading the socket's queue for what appeared
//! since; neither walks `/sys` again on the critical path. Without an early scan (a zinit
//! service, an operator's run) each makes its own.

use crate::coldplug::Watch;
use std::path::PathBuf;
use std::sync::Mutex;
use std::thread::JoinHandle;

/// Where the early scan stands.
#[derive(Default)]
enum State {
    /// None was started.
    #[default]
    None,
    Running(JoinHandle<Watch>),
    Ready(Watch),
    /// Coldplug has it.
    Taken,
}

/// The early scan, shared by the steps of one process.
#[derive(Default)]
pub struct EarlyWatch(Mutex<State>);

impl EarlyWatch {
    /// Starts the scan of `sysfs` on a thread of its own (once; later calls do nothing).
    pub fn start(&self, sysfs: PathBuf) {
        let mut state = self.lock();
        if !matches!(*state, State::None) {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("devices".into())
            .spawn(move || Watch::start(&sysfs));
        // Without a thread, the steps scan for themselves.
        if let Ok(handle) = spawned {
            *state = State::Running(handle);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a running scan (a walk of `/sys`, which ends) and keeps its result.
    fn settle(state: &mut State) {
        if let State::Running(_) = state {
            let State::Running(handle) = std::mem::take(state) else {
                return;
            };
            if let Ok(watch) = handle.join() {
                *state = State::Ready(watch);
            }
        }
    }

    /// The modaliases of the devices the early scan found; `None` without one.
    pub fn aliases(&self) -> Option<Vec<String>> {
        let mut state = self.lock();
        Self::settle(&mut state);
        match &*state {
            State::Ready(watch) => Some(watch.devices.iter().map(|(_, a)| a.clone()).collect()),
            _ => None,
        }
    }

    /// The early scan with its socket, for coldplug (once); `None` without one.
    pub fn take(&self) -> Option<Watch> {
        let mut state = self.lock();
        Self::settle(&mut state);
        match std::mem::replace(&mut *state, State::Taken) {
            State::Ready(watch) => Some(watch),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_is_read_by_many_and_taken_once() {
        let root = std::env::temp_dir().join(format!("initagent-early-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dev = root.join("devices/pci0000:00/0000:00:03.0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("modalias"), "pci:v00008086d0000100Esv\n").unwrap();
        let none = EarlyWatch::default();
        assert!(none.aliases().is_none(), "nothing started: the steps scan");
        assert!(none.take().is_none());
        let early = EarlyWatch::default();
        early.start(root.clone());
        early.start(root.join("elsewhere")); // a second start changes nothing
        let expected = vec!["pci:v00008086d0000100Esv".to_string()];
        assert_eq!(early.aliases(), Some(expected.clone()));
        assert_eq!(early.aliases(), Some(expected));
        let watch = early.take().expect("coldplug takes it");
        assert_eq!(watch.devices.len(), 1);
        assert!(early.take().is_none(), "taken once");
        assert!(early.aliases().is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
