//! Any text through the redaction rule: never a panic, masking is idempotent, and a
//! secret (any run of characters without a separator, '@', '?' or '#', even one that
//! looks like a URL) placed in a URL anywhere in the text comes out as `***`.
#![no_main]

use initagent::redact;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let once = redact::text(text);
    assert_eq!(redact::text(&once), once);
    let _ = redact::url(text);
    let _ = redact::strip_password(text);
    // The first word is a secret; the rest is context the URL sits in.
    let (secret, context) = text.split_once(' ').unwrap_or((text, ""));
    let clean = |c: char| {
        !(c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | '\\' | ',' | ';' | '@' | '?' | '#'))
    };
    if !secret.is_empty() && secret.chars().all(clean) {
        // Words are masked one by one: the URL's word comes out exactly masked, the
        // context as it comes out alone.
        let line = format!("{context} s3s://AK:{secret}@host/b?region=r {context}");
        let around = redact::text(context);
        assert_eq!(
            redact::text(&line),
            format!("{around} s3s://AK:***@host/b?region=r {around}"),
            "{line:?}"
        );
    }
});
