//! Any text as a modprobe.d file, and as a kernel command line for module options: the
//! parsers and the pattern matching they feed never panic.
#![no_main]

use initagent::config::cmdline::Cmdline;
use initagent::kmod::config::{kernel_cmdline_options, ModprobeConfig};
use initagent::kmod::fnmatch::fnmatch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut config = ModprobeConfig::default();
    config.parse(&text, "fuzz.conf");
    config.add_cmdline(&Cmdline::parse(&text));
    let _ = kernel_cmdline_options(&text);
    let _ = config.softdep_for("e1000e");
    let _ = config.install_for("e1000e");
    let _ = config.options_for("e1000e", Some("pci:v*"));
    let (pattern, subject) = data.split_at(data.len() / 2);
    let _ = fnmatch(pattern, subject);
});
