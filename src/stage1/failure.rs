//! What PID 1 does when stage 1 cannot go on (`initagent.on_failure=`): a rescue shell,
//! a countdown and reboot, or halt. None of these returns, and none lets PID 1 exit
//! (that would be "Attempted to kill init" and a kernel panic).

use crate::config::FailurePolicy;
use crate::sys::power::{power, PowerAction};
use crate::sys::process::{self, SpawnOptions};
use std::time::Duration;

const RESCUE_SHELL: &str = "/bin/sh";

/// Says what failed and where the report is, then applies `policy`. Never returns.
pub fn apply(policy: FailurePolicy, reboot_delay_s: u32, what: &str, report_path: &str) -> ! {
    log::error!("stage 1 failed: {what}");
    log::error!("boot report: {report_path} (read it with: initagent status)");
    match policy {
        FailurePolicy::Shell => {
            shell("(initagent rescue) # ", "leave it to reboot");
            reboot_after(reboot_delay_s)
        }
        FailurePolicy::Reboot => reboot_after(reboot_delay_s),
        FailurePolicy::Halt => {
            log::error!("halting (initagent.on_failure=halt)");
            let error = power(PowerAction::Halt);
            log::error!("{error}");
            idle_forever()
        }
    }
}

/// Runs `/bin/sh` on the console in its own session with `prompt` and waits for it to
/// end; `then` says what happens when it does. Returns at once when there is no shell.
pub fn shell(prompt: &str, then: &str) {
    if !crate::sys::is_executable(std::path::Path::new(RESCUE_SHELL)) {
        log::error!("no shell: {RESCUE_SHELL} is missing from the initramfs");
        return;
    }
    log::error!("starting a shell on the console ({RESCUE_SHELL}); {then}");
    let env: Vec<String> = [
        "HOME=/".to_string(),
        "TERM=linux".to_string(),
        "PATH=/sbin:/bin:/usr/sbin:/usr/bin".to_string(),
        format!("PS1={prompt}"),
    ]
    .to_vec();
    let argv = vec![RESCUE_SHELL.to_string()];
    match process::spawn(
        &argv,
        &env,
        SpawnOptions {
            console_session: true,
            ..SpawnOptions::default()
        },
    ) {
        Ok(child) => match process::wait(&child, None) {
            Ok(Some(exit)) => log::error!("rescue shell ended ({exit})"),
            Ok(None) => {}
            Err(e) => log::error!("shell: {e}"),
        },
        Err(e) => log::error!("shell: {e}"),
    }
}

fn reboot_after(delay_s: u32) -> ! {
    log::error!("rebooting in {delay_s} s (initagent.reboot_delay= sets the delay)");
    let mut left = delay_s;
    while left > 0 {
        std::thread::sleep(Duration::from_secs(1));
        left -= 1;
        if left > 0 && (left % 10 == 0 || left <= 3) {
            log::error!("rebooting in {left} s");
        }
    }
    log::error!("rebooting now");
    let error = power(PowerAction::Reboot);
    log::error!("{error}; halting instead");
    let _ = power(PowerAction::Halt);
    idle_forever()
}

fn idle_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
