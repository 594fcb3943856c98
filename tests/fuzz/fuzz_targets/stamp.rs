//! Arbitrary text as a module tree's content stamp: parsing never panics, errors name a
//! line, and every file parsed gives its digests or `None` without panicking.
#![no_main]

use initagent::depmod::stamp::ParsedStamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match ParsedStamp::parse(&text) {
        Ok(stamp) => {
            assert!(!stamp.release.is_empty());
            for file in stamp.maps.iter().chain(&stamp.modules) {
                let _ = file.chunks();
                let _ = file.matches(file.size, file.mtime);
            }
        }
        Err(why) => assert!(!why.is_empty()),
    }
});
