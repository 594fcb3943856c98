//! Any words as modprobe's command line (NUL-separated), the first word standing for
//! MODPROBE_OPTIONS: the parser never panics, every argument it returns is one of the
//! words it was given, and after a leading `--` every word is an argument, as given.
#![no_main]

use initagent::cli::modprobe_args::{env_words, options_from_args, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut words = text.split('\0').map(str::to_string);
    let env = words.next();
    let args: Vec<String> = words.collect();
    let mut given: Vec<String> = env.as_deref().map(env_words).unwrap_or_default();
    given.extend(args.iter().cloned());
    if let Ok(inv) = parse(&args, env.as_deref()) {
        for arg in &inv.args {
            assert!(given.contains(arg), "{arg:?} was not given: {given:?}");
        }
        let _ = options_from_args(&inv.args);
    }
    let mut guarded = vec!["--".to_string()];
    guarded.extend(args.iter().cloned());
    let inv = parse(&guarded, None).expect("nothing after -- is an option");
    assert_eq!(inv.args, args);
});
