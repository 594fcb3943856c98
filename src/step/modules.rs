//! The `bootstrap` and `modules` steps: load a module list (`/etc/initagent/bootstrap`,
//! `/etc/initagent/modules`) with the agent's own loader, and make the kernel's own
//! module requests (`request_module`) reach the agent when the image has no modprobe.

use super::{Ctx, StepDone, StepError};
use crate::kmod;
use crate::kmod::load::LoadOptions;
use crate::kmod::resolve::BlacklistMode;
use std::path::{Path, PathBuf};

const MODPROBE_BINARIES: &[&str] = &[
    "/sbin/modprobe",
    "/usr/sbin/modprobe",
    "/bin/modprobe",
    "/usr/bin/modprobe",
];
/// The bootstrap set: modules the initramfs carries and stage 1 loads before the network
/// (NIC drivers, `fuse`), written by the image builder from `targets/<name>/bootstrap`.
pub const BOOTSTRAP_LIST: &str = "/etc/initagent/bootstrap";
/// Where stage 1 puts a `modprobe` name for itself when the image has none.
pub const MODPROBE_LINK: &str = crate::rundir::MODPROBE_LINK;

/// Points `/proc/sys/kernel/modprobe` at the agent (through a link named `modprobe`, so
/// it runs its modprobe personality) unless a modprobe binary exists.
pub fn route_kernel_requests() -> Result<Option<PathBuf>, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the agent's own path: {e}"))?;
    // A modprobe that is the agent itself (the image's /sbin/modprobe link) is not another
    // modprobe: the kernel is pointed at the agent's own link all the same.
    let own = exe.canonicalize().ok();
    if MODPROBE_BINARIES.iter().any(|b| {
        let path = Path::new(b);
        crate::sys::is_executable(path) && path.canonicalize().ok() != own
    }) {
        return Ok(None);
    }
    let link = Path::new(MODPROBE_LINK);
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(&exe, link).map_err(|e| format!("{MODPROBE_LINK}: {e}"))?;
    std::fs::write("/proc/sys/kernel/modprobe", MODPROBE_LINK)
        .map_err(|e| format!("/proc/sys/kernel/modprobe: {e}"))?;
    Ok(Some(link.to_path_buf()))
}

/// How a module list is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Devices {
    /// Every module listed.
    All,
    /// A listed driver whose aliases are all on buses that are complete at this point
    /// ([`kmod::gate::COMPLETE_BUSES`]) only when a device present matches one of them
    /// (the bootstrap set: an image's NIC drivers for every machine of a fleet). Devices
    /// that appear as drivers load (a virtio NIC once `virtio_pci` is in) are looked for
    /// again after each run. The command line's modules always load.
    Present,
}

/// Loads `before`, the list, then `after` (the command line's additions:
/// `rd.driver.pre=`, `modules_load=`); degraded when a required module failed or a name
/// matched nothing, and when the list or the tree is missing (this node can never load
/// it: nothing waits).
pub fn load(
    ctx: &Ctx,
    list: &Path,
    before: &[String],
    after: &[String],
    devices: Devices,
) -> Result<StepDone, StepError> {
    let listed = match std::fs::read_to_string(list) {
        Ok(text) => kmod::parse_list(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !(before.is_empty() && after.is_empty()) => {
            log::warn!("no module list at {}: loading only what the command line names", list.display());
            Vec::new()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(StepDone::degraded(format!(
                "no module list at {}: nothing loaded (the image builder writes it from the target's list)",
                list.display()
            ))
            .count("requested", 0))
        }
        Err(e) => {
            return Err(StepError::Input {
                path: list.to_path_buf(),
                why: format!("cannot read the module list: {e}"),
            })
        }
    };
    let mut inputs: Vec<String> = before.to_vec();
    for name in listed.into_iter().chain(after.iter().cloned()) {
        if !inputs.contains(&name) {
            inputs.push(name);
        }
    }
    let routed = match route_kernel_requests() {
        Ok(Some(link)) => format!("; kernel requests go to {}", link.display()),
        Ok(None) => String::new(),
        Err(e) => {
            log::warn!("kernel module requests stay unanswered: {e}");
            format!("; kernel requests not routed: {e}")
        }
    };
    let modules = match ctx.modules() {
        Ok(modules) => modules,
        Err(e) => {
            return Ok(StepDone::degraded(format!(
                "{e}: none of the {} modules of {} loaded",
                inputs.len(),
                list.display()
            ))
            .count("requested", inputs.len() as u64))
        }
    };
    for problem in &modules.tree.problems {
        log::warn!("{problem}");
    }
    let mut options = LoadOptions {
        sequential: ctx.config.modules_sequential.iter().cloned().collect(),
        deadline: Some(ctx.config.modules_deadline()),
        ..LoadOptions::default()
    };
    if !ctx.config.modules_parallel {
        options.workers = 1;
    }
    let kernel = ctx.staged_kernel();
    let gate = match devices {
        Devices::Present => {
            let listed: Vec<String> = (inputs.iter())
                .filter(|n| !before.contains(n) && !after.contains(n))
                .cloned()
                .collect();
            kmod::gate::Gate::new(&modules.tree, &listed)
        }
        Devices::All => kmod::gate::Gate::default(),
    };
    // Without a gated driver, /sys is not read.
    let matched = || {
        if gate.is_empty() {
            Vec::new()
        } else {
            gate.matching(&present_devices(&ctx.sysfs))
        }
    };
    let (mut now, mut waiting) = split_by_device(&gate, &matched(), inputs.clone());
    let mut runs = Vec::new();
    loop {
        let (plan, report) = modules.load_with(&kernel, &now, &options, BlacklistMode::AliasOnly);
        let loaded = report.counters().get("loaded").copied().unwrap_or(0);
        runs.push((plan, report));
        if waiting.is_empty() || loaded == 0 {
            break;
        }
        (now, waiting) = split_by_device(&gate, &matched(), waiting);
        if now.is_empty() {
            break;
        }
    }
    let mut failures = Vec::new();
    let mut report = kmod::load::Report::default();
    for (plan, run) in &runs {
        for (name, outcome) in &run.modules {
            log::debug!("{}", kmod::describe_outcome(name, outcome));
        }
        failures.extend(run.required_failures(plan));
        report = kmod::merge_outcomes(report, run);
    }
    for failure in &failures {
        log::warn!("module {failure}");
    }
    let counters = report.counters();
    let summary: Vec<String> = counters
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    let no_device = if waiting.is_empty() {
        String::new()
    } else {
        format!("; no device for {}", waiting.join(", "))
    };
    let mut detail = format!(
        "{} requested: {}{no_device}{routed}",
        inputs.len(),
        summary.join(", ")
    );
    let mut done = if failures.is_empty() {
        StepDone::ok(detail)
    } else {
        detail.push_str("; ");
        detail.push_str(&failures.join("; "));
        StepDone::degraded(detail)
    };
    for (key, value) in counters {
        done = done.count(&key, value);
    }
    if devices == Devices::Present {
        done = done.count("no_device", waiting.len() as u64);
    }
    Ok(kernel
        .counted(done)
        .count("requested", inputs.len() as u64)
        .with_result(&report))
}

/// The inputs to load now (not gated, or a device present matches them: `matched`) and
/// those that wait for a device, each in the order given.
fn split_by_device(
    gate: &kmod::gate::Gate,
    matched: &[String],
    inputs: Vec<String>,
) -> (Vec<String>, Vec<String>) {
    inputs
        .into_iter()
        .partition(|name| !gate.gates(name) || matched.contains(&kmod::name::modname(name)))
}

/// The modaliases of the devices on [`kmod::gate::COMPLETE_BUSES`] under `sysfs`, and of
/// the virtio devices the PCI ones become once `virtio_pci` binds them.
fn present_devices(sysfs: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for bus in kmod::gate::COMPLETE_BUSES {
        let Ok(entries) = std::fs::read_dir(sysfs.join("bus").join(bus).join("devices")) else {
            continue; // the bus is not there (virtio before its core module loads)
        };
        for entry in entries.flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path().join("modalias")) {
                let alias = text.trim_end().to_string();
                found.extend(kmod::gate::virtio_of_pci(&alias));
                found.push(alias);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmod::gate::Gate;

    #[test]
    fn gated_drivers_wait_for_a_device_on_a_complete_bus() {
        let sysfs = crate::testing::scratch("bootstrap-devices");
        let device = |bus: &str, name: &str, alias: &str| {
            let dir = sysfs.join("bus").join(bus).join("devices").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("modalias"), format!("{alias}\n")).unwrap();
        };
        // QEMU's virtio NIC, before virtio_pci has made a virtio device of it.
        device(
            "pci",
            "0000:00:03.0",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
        );
        device(
            "usb",
            "1-1",
            "usb:v0BDAp8153d3000dc00dsc00dp00icFFiscFFip00in00",
        );
        let present = present_devices(&sysfs);
        assert_eq!(
            present,
            vec![
                "virtio:d00000001v00001AF4".to_string(),
                "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00".to_string(),
            ],
            "the USB bus is not read"
        );
        let gate = Gate::from_drivers(vec![
            (
                "e1000".into(),
                vec!["pci:v00008086d0000100Esv*sd*bc*sc*i*".into()],
            ),
            (
                "virtio_pci".into(),
                vec!["pci:v00001AF4d*sv*sd*bc*sc*i*".into()],
            ),
            ("virtio_net".into(), vec!["virtio:d00000001v*".into()]),
        ]);
        let inputs = ["virtio_pci", "virtio-net", "e1000", "fuse"].map(String::from);
        let (now, waiting) = split_by_device(&gate, &gate.matching(&present), inputs.to_vec());
        assert_eq!(now, ["virtio_pci", "virtio-net", "fuse"]);
        assert_eq!(waiting, ["e1000"]);
        std::fs::remove_dir_all(&sysfs).unwrap();
    }
}
