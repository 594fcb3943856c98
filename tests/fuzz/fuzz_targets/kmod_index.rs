//! Any bytes as a kmod binary index (and as a module's ELF image): parsing, exact and
//! wildcard lookups and a full dump return values or errors, never panic or hang.
#![no_main]

use initagent::kmod::elf::Modinfo;
use initagent::kmod::index::Index;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = Index::new(data) {
        let _ = index.lookup(b"ext4");
        let _ = index.search_wild(b"pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00");
        let _ = index.search_wild(data.get(..32).unwrap_or(data));
        let _ = index.for_each(|_, _| {});
    }
    let _ = Modinfo::from_elf(data);
    let _ = initagent::kmod::compress::decompress(data);
});
