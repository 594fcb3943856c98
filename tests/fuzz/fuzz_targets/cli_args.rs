//! Any words (NUL-separated) as initagent's command line: the grammar never panics; what
//! it accepts is a command of the table, with only that command's options, as many
//! arguments as it takes, each one of the words given; every refusal names a message.
#![no_main]

use initagent::cli::spec::{command, parse, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let words: Vec<String> = text.split('\0').map(str::to_string).collect();
    match parse(&words) {
        Ok(Parsed::Run {
            command: name,
            given,
            positional,
        }) => {
            let command = command(name).expect("a command of the table");
            for (opt, value) in &given {
                assert!(command.options.contains(opt), "{name}: --{}", opt.long);
                assert_eq!(opt.value.is_some(), value.is_some());
            }
            assert!(positional.len() >= command.arity.0 && positional.len() <= command.arity.1);
            for word in &positional {
                assert!(words.contains(word), "{word:?} was not given");
            }
        }
        Ok(Parsed::Help(_)) | Ok(Parsed::Version) => {}
        Err(e) => assert!(!e.message.is_empty()),
    }
});
