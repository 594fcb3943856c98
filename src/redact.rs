//! The one redaction rule: where a URL's credentials are, and every sink's way to hide
//! them. Pure (no I/O), unit-tested and fuzzed.
//!
//! A URL's userinfo is the text between `scheme://` and the **last** `@` before the query
//! or the fragment (`?`, `#`); `server://http://u:p@h` (rfs's fl-server) has its
//! credentials in the inner URL. A secret may itself begin with `//` (base64 does), so no
//! other `://` is taken for a nested URL: two URLs in one word (a `FROM=TO` rewrite) are
//! masked from the first password to the last `@`. So a secret written raw with `/`, `+`, `=` or `@` in it (AWS-style
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
    let start = url.find("://")? + 3;
    let after = &url[start..];
    if url[..start].ends_with("server://") && after.contains("://") {
        // rfs's fl-server route nests an HTTP URL: its credentials are the inner URL's.
        let inner = parts(after)?;
        return Some(Parts {
            scheme: &url[..start + inner.scheme.len()],
            ..inner
        });
    }
    let query = after.find(['?', '#']).unwrap_or(after.len());
    let at = after[..query].rfind('@')?;
    let userinfo = &after[..at];
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    Some(Parts {
        scheme: &url[..start],
        user,
        password,
        rest: &after[at + 1..],
    })
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
/// masked, left to right.
fn token_masked(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    let mut rest = token;
    while let Some(at) = rest.find("://") {
        // The scheme's start: back over scheme characters.
        let begin = rest[..at]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        match parts(&rest[begin..]) {
            Some(Parts {
                scheme,
                user,
                password: Some(_),
                rest: after,
            }) => {
                out.push_str(&rest[..begin]);
                out.push_str(scheme);
                out.push_str(user);
                out.push(':');
                out.push_str(MASK);
                out.push('@');
                rest = after;
            }
            _ => {
                out.push_str(&rest[..at + 3]);
                rest = &rest[at + 3..];
            }
        }
    }
    out.push_str(rest);
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
            "--store-rewrite=s3://a:***@h/"
        );
        // A secret that begins with "//" (base64 has '/') is no nested URL.
        assert_eq!(url("s3s://AK://c+d@h/b"), "s3s://AK:***@h/b");
        assert_eq!(
            strip_password("server://http://u:p@h:1/"),
            "server://http://u@h:1/"
        );
        assert!(matches!(text("no urls here"), Cow::Borrowed(_)));
        assert!(matches!(text("http://h:80/ and a@b"), Cow::Borrowed(_)));
        // Masking is idempotent.
        assert_eq!(text(&shown), shown);
        // Found by fuzzing: a multi-byte character before a scheme.
        assert_eq!(text("é:/::@ŧ server://x"), "é:/::@ŧ server://x");
    }

    #[test]
    fn json_and_debug_output() {
        let json = serde_json::json!({"stores": [format!("s3://AK:{AWS}@h/b")]}).to_string();
        assert!(!text(&json).contains(AWS), "{}", text(&json));
        let debug = format!("{:?}", vec![format!("s3://AK:{AWS}@h/b")]);
        assert!(!text(&debug).contains(AWS), "{}", text(&debug));
    }
}
