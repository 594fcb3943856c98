//! Any text as the target profile: the configuration never panics and keeps a handoff.
#![no_main]

use initagent::config::cmdline::Cmdline;
use initagent::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let config = Config::build(&Cmdline::default(), Some(("fuzz.toml", text)));
        assert!(config.handoff.first().is_some_and(|p| p.starts_with('/')));
    }
});
