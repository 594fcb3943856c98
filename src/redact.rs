//! The one redaction rule: where a URL's credentials are, and every sink's way to hide
//! them. Pure (no I/O), unit-tested and fuzzed.
//!
//! A URL's userinfo is the text between `scheme://` and the **last** `@` before the query,
//! the fragment (`?`, `#`) or the next URL's `://` (`server://http://u:p@h` has its
//! credentials in the inner URL; `FROM=TO` rewrites hold two URLs). So a secret written raw with `/`, `+`, `=` or `@` in it (AWS-style
//! secrets are base64) and one written with percent-escapes are both found whole. The
//! password is everything after the userinfo's first `:`; the user (an access key) stays
//! visible, since it names which credential was used. A token that only looks like a URL
//! may be masked too much; never too little.

use std::borrow::Cow;

/// What replaces a password.
pub const MASK: &str = "***";

/// A URL split around its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts<'a> {
    /// Everything before the userinfo: `scheme://` (`server://http://` for a nested URL).
    pub scheme: &'a str,
    /// The user (access key), percent-escapes as written.
    pub user: &'a str,
    /// The password (secret), percent-escapes as written.
    pub password: Option<&'a str>,
    /// Everything after the `@`: host, port, path, query.
    pub rest: &'a str,
}

/// Splits `url` around its userinfo; `None` when it has none (or is no URL).
pub fn parts(url: &str) -> Option<Parts<'_>> {
    let mut start = url.find("://")? + 3;
    loop {
        let after = &url[start..];
        let query = after.find(['?', '#']).unwrap_or(after.len());
        let next = after[..query].find("://");
        if let Some(at) = after[..next.unwrap_or(query)].rfind('@') {
            let userinfo = &after[..at];
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            return Some(Parts {
                scheme: &url[..start],
                user,
                password,
                rest: &after[at + 1..],
            });
        }
        // No userinfo before an inner URL (`server://http://u:p@h`): it may be there.
        start += next? + 3;
    }
}

/// `url` with its password masked (`s3://AK:***@host/b`).
pub fn url(url: &str) -> String {
    replace_password(url, Some(MASK))
}

/// `url` without its password, as rfs writes routes (`s3://AK@host/b`).
pub fn strip_password(url: &str) -> String {
    replace_password(url, None)
}

fn replace_password(url: &str, replacement: Option<&str>) -> String {
    match (parts(url), replacement) {
        (
            Some(Parts {
                scheme,
                user,
                password: Some(_),
                rest,
            }),
            Some(with),
        ) => {
            format!("{scheme}{user}:{with}@{rest}")
        }
        (
            Some(Parts {
                scheme,
                user,
                password: Some(_),
                rest,
            }),
            None,
        ) => {
            format!("{scheme}{user}@{rest}")
        }
        _ => url.to_string(),
    }
}

/// Whether `url` carries a password.
pub fn has_password(url: &str) -> bool {
    parts(url).is_some_and(|p| p.password.is_some())
}

/// Characters that end a URL inside free text (log lines, JSON, command lines).
fn ends_token(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | '\\' | ',' | ';')
}

/// Every URL in `text` with its password masked; the text is borrowed when it holds none.
pub fn text(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while !rest.is_empty() {
        let start = rest.find(|c: char| !ends_token(c)).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(ends_token).unwrap_or(rest.len());
        let token = &rest[..end];
        let masked = token_masked(token);
        changed |= masked != token;
        out.push_str(&masked);
        rest = &rest[end..];
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

/// One token (no separators in it): `key=URL`, `URL`, `server://URL`, … each URL in it
/// masked.
fn token_masked(token: &str) -> String {
    // Each "://" may open a URL (a key or a scheme before it); the innermost one that has
    // a userinfo is masked.
    let mut out = token.to_string();
    let mut search = 0;
    while let Some(found) = out[search..].find("://") {
        let at = search + found;
        // The scheme's start: back over scheme characters.
        let begin = out[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let masked = url(&out[begin..]);
        if masked != out[begin..] {
            out.replace_range(begin.., &masked);
        }
        search = at + 3;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY=";

    #[test]
    fn urls() {
        assert_eq!(
            url("s3://AK:SECRET@host:9000/b?region=x"),
            "s3://AK:***@host:9000/b?region=x"
        );
        assert_eq!(
            url(&format!("s3s://AK:{AWS}@s3.example.com/b?region=garage")),
            "s3s://AK:***@s3.example.com/b?region=garage"
        );
        assert_eq!(
            url("s3://AK:wJal%2FK7%2BbP%3D@h/b"),
            "s3://AK:***@h/b",
            "percent-escapes"
        );
        assert_eq!(
            url("s3://AK:p@ss@h/b"),
            "s3://AK:***@h/b",
            "an @ in the secret"
        );
        assert_eq!(url("zdb://host:9900/ns"), "zdb://host:9900/ns");
        assert_eq!(url("https://user:pw@h/p"), "https://user:***@h/p");
        assert_eq!(url("s3://AK@host:1/b"), "s3://AK@host:1/b");
        assert_eq!(url("garbage"), "garbage");
        assert_eq!(
            url("http://h/a?u=x@y"),
            "http://h/a?u=x@y",
            "an @ in the query"
        );
    }

    #[test]
    fn parts_find_the_last_at_before_the_query() {
        let full = format!("s3://AK:{AWS}@h:443/b?region=r");
        let p = parts(&full).unwrap();
        assert_eq!(
            (p.scheme, p.user, p.password, p.rest),
            ("s3://", "AK", Some(AWS), "h:443/b?region=r")
        );
        assert_eq!(parts("s3://h/b"), None);
        assert_eq!(
            parts("server://http://u:p@h/").unwrap().scheme,
            "server://http://"
        );
        assert_eq!(url("server://http://u:p@h/"), "server://http://u:***@h/");
    }

    #[test]
    fn stripping_keeps_the_user() {
        assert_eq!(
            strip_password(&format!("s3://AK:{AWS}@h:9000/b?region=r")),
            "s3://AK@h:9000/b?region=r"
        );
        assert_eq!(strip_password("dir:///x"), "dir:///x");
        assert!(has_password("zdb://:pw@h/ns") && !has_password("s3://AK@h/b"));
    }

    #[test]
    fn free_text() {
        let line = format!(
            "initagent.flist.store=s3s://AK:{AWS}@h/b?region=g quiet x=\"http://u:pw@h:1/\", server://http://u:p2@h/"
        );
        let shown = text(&line);
        for secret in [AWS, "pw@", "p2"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert_eq!(
            shown,
            "initagent.flist.store=s3s://AK:***@h/b?region=g quiet x=\"http://u:***@h:1/\", server://http://u:***@h/"
        );
        assert_eq!(
            text("--store-rewrite=s3://a:b@h/=s3://c:d@h/"),
            "--store-rewrite=s3://a:***@h/=s3://c:***@h/"
        );
        assert!(matches!(text("no urls here"), Cow::Borrowed(_)));
        assert!(matches!(text("http://h:80/ and a@b"), Cow::Borrowed(_)));
        // Masking is idempotent.
        assert_eq!(text(&shown), shown);
    }

    #[test]
    fn json_and_debug_output() {
        let json = serde_json::json!({"stores": [format!("s3://AK:{AWS}@h/b")]}).to_string();
        assert!(!text(&json).contains(AWS), "{}", text(&json));
        let debug = format!("{:?}", vec![format!("s3://AK:{AWS}@h/b")]);
        assert!(!text(&debug).contains(AWS), "{}", text(&debug));
    }
}
