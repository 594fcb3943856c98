//! Any words as modprobe's command line (NUL-separated), the first word standing for
//! MODPROBE_OPTIONS: the parser never panics, everything after `--` is kept as
//! arguments, and the options' words never turn into arguments.
#![no_main]

use initagent::cli::modprobe_args::{env_words, options_from_args, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut words = text.split('\0').map(str::to_string);
    let env = words.next();
    let args: Vec<String> = words.collect();
    if let Some(env) = &env {
        for word in env_words(env) {
            assert!(!word.contains('\0'));
        }
    }
    if let Ok(inv) = parse(&args, env.as_deref()) {
        if let Some(at) = args.iter().position(|a| a == "--") {
            let after = &args[at + 1..];
            assert!(inv.args.ends_with(after), "{args:?} → {:?}", inv.args);
        }
        let _ = options_from_args(&inv.args);
    }
});
