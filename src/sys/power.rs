//! reboot(2): restart, halt, power off. Disks are synced first.

use std::io;

/// What to do with the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Restart.
    Reboot,
    /// Stop the CPUs and wait.
    Halt,
    /// Power off.
    PowerOff,
}

/// Syncs and asks the kernel for `action`. Returns only if the kernel refused.
pub fn power(action: PowerAction) -> io::Error {
    rustix::fs::sync();
    let command = match action {
        PowerAction::Reboot => rustix::system::RebootCommand::Restart,
        PowerAction::Halt => rustix::system::RebootCommand::Halt,
        PowerAction::PowerOff => rustix::system::RebootCommand::PowerOff,
    };
    match rustix::system::reboot(command) {
        Ok(()) => io::Error::other("reboot(2) returned without acting"),
        Err(e) => io::Error::new(e.kind(), format!("reboot(2) {action:?}: {e}")),
    }
}
