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

/// Loads `before`, the list, then `after` (the command line's additions:
/// `rd.driver.pre=`, `modules_load=`); degraded when a required module failed or a name
/// matched nothing, and when the list or the tree is missing (this node can never load
/// it: nothing waits).
pub fn load(
    ctx: &Ctx,
    list: &Path,
    before: &[String],
    after: &[String],
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
    let (plan, report) = modules.load_with(&kernel, &inputs, &options, BlacklistMode::AliasOnly);
    for (name, outcome) in &report.modules {
        log::debug!("{}", kmod::describe_outcome(name, outcome));
    }
    let failures = report.required_failures(&plan);
    for failure in &failures {
        log::warn!("module {failure}");
    }
    let counters = report.counters();
    let summary: Vec<String> = counters
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    let mut detail = format!("{} requested: {}{routed}", inputs.len(), summary.join(", "));
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
    Ok(kernel
        .counted(done)
        .count("requested", inputs.len() as u64)
        .with_result(&report))
}
