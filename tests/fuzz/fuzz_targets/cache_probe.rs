//! Any first mebibyte of a device: the probe never panics, and only zeros are blank (a
//! device is formatted only then).
#![no_main]

use initagent::cachedev::probe::{probe, Content};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let content = probe(data);
    if content == Content::Blank {
        assert!(data.iter().all(|&b| b == 0));
    }
});
