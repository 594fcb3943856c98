//! Named objects beside the blobs: what the nodes leave in a store (their boot reports,
//! `reports/<node-id>/<boot-id>.json`) and the fleet view reads back. A key is a few
//! plain segments, so it means the same file, URL path or S3 key everywhere and can never
//! climb out of the store's directory.

use super::s3::S3Store;
use super::{sigv4, StoreError};

/// The most a key may hold.
const MAX_KEY: usize = 512;
/// Pages of an S3 listing read at most (1,000 keys each): a listing always ends.
const MAX_PAGES: usize = 200;

/// A checked object key: `/`-separated segments of `[A-Za-z0-9._-]`, none empty, `.`
/// or `..`, none starting with a dot (the stores' own temporary files do).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn new(key: &str) -> Result<ObjectKey, StoreError> {
        let bad = |why: &str| StoreError::BadUrl(format!("object key {key:?}: {why}"));
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(bad("empty or longer than 512 bytes"));
        }
        for segment in key.split('/') {
            if segment.is_empty() || segment.starts_with('.') {
                return Err(bad("an empty segment, or one starting with a dot"));
            }
            if !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return Err(bad(
                    "only letters, digits, '.', '_' and '-' between slashes",
                ));
            }
        }
        Ok(ObjectKey(key.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This key with `name` (a key's segments) appended.
    pub fn join(&self, name: &str) -> Result<ObjectKey, StoreError> {
        ObjectKey::new(&format!("{}/{name}", self.0))
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a store that cannot do it says.
pub(super) fn unsupported(store: String, what: &str, key: &ObjectKey) -> StoreError {
    StoreError::BadUrl(format!(
        "{store}: this kind of store cannot be {what} ({key}); use a dir://, http(s):// or s3:// store (listing: dir:// or s3://)"
    ))
}

/// A query value as SigV4 canonicalises it: everything but the unreserved bytes encoded.
fn encode_value(value: &str) -> String {
    sigv4::encode_path(value).replace('/', "%2F")
}

pub(super) fn s3_put(store: &S3Store, key: &ObjectKey, data: &[u8]) -> Result<(), StoreError> {
    let path = format!("{}/{key}", store.bucket_path());
    match store.send("PUT", &path, "", Some(data))? {
        Some(_) => Ok(()),
        None => Err(StoreError::Unavailable(format!(
            "PUT {path}: HTTP 404 (see the store's logs)"
        ))),
    }
}

pub(super) fn s3_get(store: &S3Store, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
    let path = format!("{}/{key}", store.bucket_path());
    match store.send("GET", &path, "", None)? {
        Some(response) => super::http_blob(response, &format!("GET {path}: "), "access denied")?
            .ok_or(StoreError::NotFound),
        None => Err(StoreError::NotFound),
    }
}

/// ListObjectsV2 under `prefix/`, page after page (bounded).
pub(super) fn s3_list(store: &S3Store, prefix: &ObjectKey) -> Result<Vec<ObjectKey>, StoreError> {
    let path = store.bucket_path().to_string();
    let prefix_value = encode_value(&format!("{prefix}/"));
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        // Canonical: the parameters sorted by name.
        let query = match &token {
            Some(token) => format!(
                "continuation-token={}&list-type=2&prefix={prefix_value}",
                encode_value(token)
            ),
            None => format!("list-type=2&prefix={prefix_value}"),
        };
        let body = match store.send("GET", &path, &query, None)? {
            Some(response) => {
                super::http_blob(response, &format!("list {path}: "), "access denied")?
                    .unwrap_or_default()
            }
            None => return Ok(keys),
        };
        let page = parse_list(&String::from_utf8_lossy(&body));
        keys.extend(page.keys);
        match page.next {
            Some(next) => token = Some(next),
            None => return Ok(keys),
        }
    }
    Err(StoreError::Unavailable(format!(
        "list {path}: more than {MAX_PAGES} pages under {prefix}/; list a narrower prefix"
    )))
}

/// One page of a ListObjectsV2 answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The keys that are valid [`ObjectKey`]s (others are not ours and are skipped).
    pub keys: Vec<ObjectKey>,
    /// The token of the next page, when the answer is truncated.
    pub next: Option<String>,
}

/// Reads a ListObjectsV2 answer (pure).
pub fn parse_list(xml: &str) -> ListPage {
    let mut page = ListPage::default();
    let mut rest = xml;
    while let Some(start) = rest.find("<Key>") {
        let after = &rest[start + 5..];
        let Some(end) = after.find("</Key>") else {
            break;
        };
        if let Ok(key) = ObjectKey::new(&unescape(&after[..end])) {
            page.keys.push(key);
        }
        rest = &after[end..];
    }
    let field = |name: &str| super::s3::xml_field(xml, name).map(unescape);
    if field("IsTruncated").as_deref() == Some("true") {
        page.next = field("NextContinuationToken").filter(|t| !t.is_empty());
    }
    page
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_segments() {
        assert!(ObjectKey::new("reports/node-1/0a1b.json").is_ok());
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/../b",
            "a/./b",
            "reports/.hidden",
            "a b",
            "a/b?c",
            "a\\b",
            "trailing/",
        ] {
            assert!(ObjectKey::new(bad).is_err(), "{bad:?}");
        }
        assert!(ObjectKey::new(&"x".repeat(513)).is_err());
        let key = ObjectKey::new("reports").unwrap().join("n1").unwrap();
        assert_eq!(key.as_str(), "reports/n1");
        assert!(key.join("../x").is_err());
    }

    #[test]
    fn list_pages_and_their_continuation() {
        let xml =
            "<?xml version=\"1.0\"?><ListBucketResult><Name>b</Name><Prefix>reports/</Prefix>\
            <KeyCount>3</KeyCount><IsTruncated>true</IsTruncated>\
            <Contents><Key>reports/n1/a.json</Key><Size>10</Size></Contents>\
            <Contents><Key>reports/bad key</Key></Contents>\
            <Contents><Key>reports/n2/b.json</Key></Contents>\
            <NextContinuationToken>1/abc+=&amp;</NextContinuationToken></ListBucketResult>";
        let page = parse_list(xml);
        let keys: Vec<&str> = page.keys.iter().map(ObjectKey::as_str).collect();
        assert_eq!(keys, ["reports/n1/a.json", "reports/n2/b.json"]);
        assert_eq!(page.next.as_deref(), Some("1/abc+=&"));
        assert_eq!(encode_value("1/abc+=&"), "1%2Fabc%2B%3D%26");
        let last =
            parse_list("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>");
        assert_eq!(last, ListPage::default());
        assert_eq!(parse_list("<Key>unterminated"), ListPage::default());
    }
}
