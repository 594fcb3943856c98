//! Any bytes as a message on the kernel's uevent socket: no panic; what parses has an
//! action, an absolute device path and non-empty keys.
#![no_main]

use initagent::coldplug::uevent::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(event) = parse(data) {
        assert!(!event.action.is_empty());
        assert!(event.devpath.starts_with('/'));
        assert!(event.vars.iter().all(|(k, _)| !k.is_empty()));
        let _ = event.modalias();
    }
});
