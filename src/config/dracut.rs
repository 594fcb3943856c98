//! The kernel command-line keys operators type from habit — dracut's `rd.*` and systemd's
//! `modules_load=` — read as the `initagent.*` keys they stand for (pure). They are applied
//! before the `initagent.*` keys, so an explicit `initagent.*` key wins; `initagent config`
//! names the key that set each value. `rd.driver.blacklist=` (like kmod's
//! `modprobe.blacklist=`) is read by the module configuration itself
//! ([`crate::kmod::config`]).

use super::cmdline::Cmdline;
use super::RawValue;

/// One alias found on the command line: the `initagent.*` key, its value, and the key as
/// the operator typed it (for `initagent config` and warnings).
#[derive(Debug, Clone, PartialEq)]
pub struct Alias {
    pub key: &'static str,
    pub value: RawValue,
    pub typed: String,
}

/// dracut's breakpoints, in boot order, and the stage-1 step each stops before.
const BREAKPOINTS: &[(&str, &str)] = &[
    ("cmdline", "bootstrap"),
    ("pre-udev", "bootstrap"),
    ("pre-trigger", "coldplug"),
    ("initqueue", "net"),
    ("pre-mount", "flists"),
    ("mount", "depmod"),
    ("pre-pivot", "handoff"),
    ("cleanup", "handoff"),
];

/// The aliases `cmdline` holds, in command-line order; with the warnings for values that
/// mean nothing.
pub fn aliases(cmdline: &Cmdline) -> (Vec<Alias>, Vec<String>) {
    let mut found = Vec::new();
    let mut warnings = Vec::new();
    let mut modules_pre: Vec<String> = Vec::new();
    let mut modules_load: Vec<String> = Vec::new();
    for param in cmdline.params() {
        let value = param.value.as_deref();
        let typed = match value {
            Some(v) => format!("{}={v}", param.key),
            None => param.key.clone(),
        };
        let alias = |key: &'static str, value: &str| Alias {
            key,
            value: RawValue::Text(value.to_string()),
            typed: typed.clone(),
        };
        match (param.key.as_str(), value) {
            ("rd.break", None | Some("")) => found.push(alias("break", "handoff")),
            ("rd.break", Some(point)) => {
                match BREAKPOINTS.iter().find(|(name, _)| *name == point) {
                    Some((_, step)) => found.push(alias("break", step)),
                    // A stage-1 step's own name works too.
                    None if super::keys::BREAKABLE_STEPS.contains(&point) => {
                        found.push(alias("break", point))
                    }
                    None => warnings.push(format!(
                        "kernel command line: {typed}: not a breakpoint ({}, or a step: {}); ignored",
                        BREAKPOINTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
                        super::keys::BREAKABLE_STEPS.join(", ")
                    )),
                }
            }
            ("rd.shell", None | Some("1" | "yes" | "true" | "")) => {
                found.push(alias("on_failure", "shell"))
            }
            ("rd.shell", Some("0" | "no" | "false")) => found.push(alias("on_failure", "reboot")),
            ("rd.emergency", Some("reboot")) => found.push(alias("on_failure", "reboot")),
            ("rd.emergency", Some("poweroff" | "halt")) => found.push(alias("on_failure", "halt")),
            ("rd.shell" | "rd.emergency", _) => warnings.push(format!(
                "kernel command line: {typed}: not understood (rd.shell, rd.shell=0, \
                 rd.emergency=reboot|poweroff|halt); ignored"
            )),
            ("rd.driver.pre", Some(list)) => modules_pre.extend(names(list)),
            (
                "modules_load" | "modules-load" | "rd.modules_load" | "rd.modules-load",
                Some(list),
            ) => modules_load.extend(names(list)),
            _ => continue,
        }
    }
    // The lists add up over repeated keys, as dracut and systemd read them.
    for (key, list, spelled) in [
        ("modules_pre", modules_pre, "rd.driver.pre"),
        ("modules_load", modules_load, "modules_load"),
    ] {
        if !list.is_empty() {
            found.push(Alias {
                key,
                value: RawValue::List(list),
                typed: spelled.to_string(),
            });
        }
    }
    (found, warnings)
}

/// Module names from a comma-separated list, `-` read as `_`.
fn names(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| n.replace('-', "_"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<(&'static str, RawValue, String)> {
        aliases(&Cmdline::parse(text))
            .0
            .into_iter()
            .map(|a| (a.key, a.value, a.typed))
            .collect()
    }

    fn text(value: &str) -> RawValue {
        RawValue::Text(value.to_string())
    }

    #[test]
    fn dracut_and_systemd_keys_become_initagent_keys() {
        assert_eq!(
            keys("quiet rd.break rd.shell"),
            vec![
                ("break", text("handoff"), "rd.break".into()),
                ("on_failure", text("shell"), "rd.shell".into()),
            ]
        );
        assert_eq!(
            keys("rd.break=pre-mount rd.emergency=poweroff"),
            vec![
                ("break", text("flists"), "rd.break=pre-mount".into()),
                ("on_failure", text("halt"), "rd.emergency=poweroff".into()),
            ]
        );
        assert_eq!(keys("rd.break=modules")[0].1, text("modules"));
        assert_eq!(
            keys("rd.driver.pre=e1000e,igb modules_load=dummy rd.modules-load=nbd-x rd.driver.pre=bnx2"),
            vec![
                (
                    "modules_pre",
                    RawValue::List(vec!["e1000e".into(), "igb".into(), "bnx2".into()]),
                    "rd.driver.pre".into()
                ),
                (
                    "modules_load",
                    RawValue::List(vec!["dummy".into(), "nbd_x".into()]),
                    "modules_load".into()
                ),
            ]
        );
    }

    #[test]
    fn values_that_mean_nothing_are_warned_about_not_applied() {
        let (found, warnings) = aliases(&Cmdline::parse(
            "rd.break=later rd.emergency=dance rd.shell=maybe",
        ));
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings[0].contains("rd.break=later: not a breakpoint"),
            "{warnings:?}"
        );
    }
}
