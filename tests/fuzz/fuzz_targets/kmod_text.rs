//! Arbitrary bytes as the text maps (`modules.dep`, `modules.alias`, `modules.order`,
//! `modules.builtin`) and as `modules.builtin.modinfo`: parsing never panics, every line
//! is either parsed or reported bad, and nothing parsed is empty.
#![no_main]

use initagent::kmod::text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (deps, bad) = text::parse_dep(&text);
    assert!(deps.len() + bad.len() <= text.lines().count());
    let (aliases, bad) = text::parse_alias(&text);
    assert!(aliases.len() + bad.len() <= text.lines().count());
    for (alias, module) in &aliases {
        assert!(!alias.is_empty() && !module.is_empty());
    }
    for path in text::parse_paths(&text) {
        assert!(!path.is_empty());
    }
    let _ = text::parse_builtin_modinfo(data);
});
