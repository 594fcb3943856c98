//! Arbitrary text as `/proc/self/mountinfo`: parsing never panics, and every entry's
//! mount point can be looked up again.
#![no_main]

use initagent::mountinfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let entries = mountinfo::parse(&text);
    for entry in &entries {
        let _ = entry.fuse_connection();
        if entry.mount_point.len() > 1 && !entry.mount_point.ends_with('/') {
            assert!(mountinfo::mounted_at(&entries, &entry.mount_point).is_some());
        }
    }
});
