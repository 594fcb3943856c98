//! Any text through the redaction rule: never a panic, masking is idempotent, and a
//! secret (any run of characters without a separator, '@', '?' or '#') placed in a URL
//! anywhere in the text is never shown.
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
    if secret.len() >= 4 && secret.chars().all(clean) && !secret.contains("://") && !secret.contains("***") {
        let line = format!("{context} s3s://AK:{secret}@host/b?region=r {context}");
        let shown = redact::text(&line);
        let outside = line.replace(&format!("AK:{secret}@"), "");
        if !outside.contains(secret) {
            assert!(!shown.contains(secret), "{line:?} -> {shown:?}");
        }
    }
});
