//! Which devices a coldplug is about: all of them, or only those of named subsystems and
//! those under named device paths (`initagent coldplug --subsystem net --device
//! /sys/devices/pci0000:00/0000:00:03.0`), like `udevadm trigger --subsystem-match` and a
//! device argument.

use std::path::Path;

/// The devices to coldplug.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Selection {
    /// Subsystem names (`net`, `pci`, `block`…).
    pub subsystems: Vec<String>,
    /// Device paths as under `/sys` (`/devices/…`; a `/sys` prefix is accepted); a device
    /// matches when it is one of them or below one.
    pub devices: Vec<String>,
}

impl Selection {
    /// No names: every device.
    pub fn is_all(&self) -> bool {
        self.subsystems.is_empty() && self.devices.is_empty()
    }

    /// Adds a device path, in either form.
    pub fn add_device(&mut self, path: &str) {
        let path = path
            .strip_prefix("/sys")
            .unwrap_or(path)
            .trim_end_matches('/');
        self.devices.push(path.to_string());
    }

    /// Whether the device at `devpath` (`/devices/…`) of `subsystem` is selected.
    pub fn matches(&self, devpath: &str, subsystem: Option<&str>) -> bool {
        if self.is_all() {
            return true;
        }
        let by_subsystem = subsystem.is_some_and(|s| self.subsystems.iter().any(|n| n == s));
        let by_path = self.devices.iter().any(|d| {
            devpath == d
                || devpath
                    .strip_prefix(d.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        });
        by_subsystem || by_path
    }

    /// Whether the device directory `dir` of the sysfs mounted at `sysfs` is selected.
    pub fn matches_dir(&self, sysfs: &Path, dir: &Path) -> bool {
        if self.is_all() {
            return true;
        }
        let devpath = format!("/{}", dir.strip_prefix(sysfs).unwrap_or(dir).display());
        self.matches(&devpath, subsystem_of(dir).as_deref())
    }
}

/// The subsystem of a device directory (the name its `subsystem` link points at).
pub fn subsystem_of(dir: &Path) -> Option<String> {
    std::fs::read_link(dir.join("subsystem"))
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_selects_everything() {
        assert!(Selection::default().matches("/devices/x", None));
    }

    #[test]
    fn subsystems_and_device_subtrees_are_selected() {
        let mut selection = Selection {
            subsystems: vec!["net".into()],
            ..Selection::default()
        };
        selection.add_device("/sys/devices/pci0000:00/0000:00:03.0/");
        assert!(selection.matches("/devices/virtual/net/lo", Some("net")));
        assert!(selection.matches("/devices/pci0000:00/0000:00:03.0", Some("pci")));
        assert!(selection.matches("/devices/pci0000:00/0000:00:03.0/virtio0", Some("virtio")));
        // A sibling whose name only starts the same is not below it.
        assert!(!selection.matches("/devices/pci0000:00/0000:00:03.01", Some("pci")));
        assert!(!selection.matches("/devices/platform/serial8250", Some("platform")));
        assert!(!selection.matches("/devices/system/cpu/cpu0", None));
    }
}
