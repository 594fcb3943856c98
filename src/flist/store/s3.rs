//! `s3://AK:SK@host[:port]/bucket[/prefix]?region=R` (plain HTTP) and `s3s://…` (HTTPS):
//! path-style `GET /bucket/H` and `PUT`, signed with AWS Signature Version 4
//! ([`super::sigv4`]) when the URL carries a secret (unsigned otherwise, as rfs does).
//! Without a port the scheme's default (80, 443) is used, and the signed `Host` is what
//! the HTTP client sends: the host alone on a default port, `host:port` otherwise.
//!
//! S3 answers errors with a code (`SignatureDoesNotMatch`, `NoSuchBucket`, …): it is read
//! from the answer and named in the error, with what to do. A node whose clock is off
//! (`RequestTimeTooSkewed`, or a 403 whose `Date` is far from ours) signs again with the
//! store's time, once, and keeps that offset for later requests ([`S3Store::clock_offset`]).
//! The secret never leaves this module: errors and descriptions are redacted.

use super::objects::{self, ObjectKey};
use super::sigv4::{self, Signer, EMPTY_SHA256};
use super::{redact, BlockStore, StoreError, StoreOptions};
use crate::flist::codec::hex;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// Skew S3 allows between the request's time and the server's (AWS: 15 minutes).
const ALLOWED_SKEW_S: i64 = 15 * 60;

/// How the store reads the time (swapped in tests for a node with a wrong clock).
pub type Clock = fn() -> i64;

fn system_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An S3 bucket (or a prefix in one).
pub struct S3Store {
    endpoint: String,
    /// The `Host` header as sent (and signed).
    host: String,
    /// `/bucket[/prefix]`, URI-encoded.
    path: String,
    region: String,
    access_key: String,
    secret_key: Option<String>,
    shown: String,
    agent: ureq::Agent,
    clock: Clock,
    /// Seconds added to the node's clock when signing (the store's time minus ours).
    offset: AtomicI64,
    skew_found: AtomicBool,
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(v) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `host[:port]` → (host, port), IPv6 literals in brackets.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.is_empty() {
        return None;
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &authority[..close + 2];
        match &rest[close + 1..] {
            "" => (host, None),
            tail => (host, Some(tail.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    match port {
        None => Some((host, None)),
        Some(port) => Some((host, Some(port.parse().ok()?))),
    }
}

/// An S3 error answer: its code and message (`<Error><Code>…</Code><Message>…</Message>`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct S3Error {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// The server's clock: its `Date` header, or `<ServerTime>` of a skew error.
    pub server_time: Option<i64>,
}

/// The text of the first `<name>` element of an S3 answer, trimmed.
pub(super) fn xml_field<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let start = body.find(&format!("<{name}>"))? + name.len() + 2;
    let end = body[start..].find(&format!("</{name}>"))? + start;
    Some(body[start..end].trim())
}

impl S3Error {
    /// Reads an error answer (the body bounded to 16 KiB).
    fn from_response(response: ureq::http::Response<ureq::Body>) -> S3Error {
        let status = response.status().as_u16();
        let date = response
            .headers()
            .get("date")
            .and_then(|v| v.to_str().ok())
            .and_then(sigv4::parse_date);
        let mut body = String::new();
        let _ = response
            .into_body()
            .into_reader()
            .take(16 * 1024)
            .read_to_string(&mut body);
        Self::parse(status, &body, date)
    }

    /// The pure part of [`S3Error::from_response`].
    pub fn parse(status: u16, body: &str, date: Option<i64>) -> S3Error {
        let field = |name| {
            xml_field(body, name)
                .map(str::to_string)
                .unwrap_or_default()
        };
        S3Error {
            status,
            code: field("Code"),
            message: field("Message"),
            server_time: xml_field(body, "ServerTime")
                .and_then(sigv4::parse_date)
                .or(date),
        }
    }

    /// What an operator should do about it.
    fn advice(&self) -> &'static str {
        match self.code.as_str() {
            "SignatureDoesNotMatch" => {
                "the secret key is wrong for this access key, or a proxy changed the request"
            }
            "InvalidAccessKeyId" => {
                "this server does not know the access key: check the route's key"
            }
            "AccessDenied" => {
                "the key may not use this bucket: grant it access (read for mounts, write for pack)"
            }
            "NoSuchBucket" => "no such bucket on this server: check the bucket in the route's path",
            "InvalidBucketName" => {
                "bucket names are 3-63 characters: lower-case letters, digits, dots and hyphens"
            }
            "AuthorizationHeaderMalformed" | "InvalidRegion" => {
                "wrong region: set the route's ?region= to the server's region"
            }
            "RequestTimeTooSkewed" => {
                "the node's clock is too far from the store's: fix the clock (NTP)"
            }
            _ if self.status == 403 => "access denied: wrong credentials or region?",
            _ => "see the store's logs",
        }
    }

    fn is_skew(&self, now: i64) -> bool {
        self.code == "RequestTimeTooSkewed"
            || (self.status == 403
                && self
                    .server_time
                    .is_some_and(|server| (server - now).abs() > ALLOWED_SKEW_S))
    }

    fn into_store_error(self, context: &str) -> StoreError {
        let what = match (self.code.is_empty(), self.message.is_empty()) {
            (true, _) => format!("{context}HTTP {}", self.status),
            (false, true) => format!("{context}HTTP {} {}", self.status, self.code),
            (false, false) => format!(
                "{context}HTTP {} {}: {}",
                self.status, self.code, self.message
            ),
        };
        let text = format!("{what} ({})", self.advice());
        match self.status {
            400 | 401 | 403 => StoreError::Denied(text),
            _ => StoreError::Unavailable(text),
        }
    }
}

impl S3Store {
    /// Parses an s3:// or s3s:// URL.
    pub fn new(url: &str, options: &StoreOptions) -> Result<S3Store, StoreError> {
        let shown = redact(url);
        let bad = |why: &str| StoreError::BadUrl(format!("{shown}: {why}"));
        let (access_key, secret_key, rest) = match crate::redact::parts(url) {
            Some(parts) => (
                percent_decode(parts.user),
                parts.password.map(percent_decode),
                parts.rest,
            ),
            None => (
                String::new(),
                None,
                url.split_once("://").map_or("", |(_, rest)| rest),
            ),
        };
        let (http, default_port) = match url.split_once("://").map(|(scheme, _)| scheme) {
            Some("s3") => ("http", 80),
            Some("s3s") => ("https", 443),
            _ => return Err(bad("expected s3:// or s3s://")),
        };
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let region = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("region="))
            .map(percent_decode)
            .unwrap_or_default();
        let (authority, path) = before_query.split_once('/').unwrap_or((before_query, ""));
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| bad("expected host[:port] after the credentials"))?;
        let host = match port {
            Some(port) if port != default_port => format!("{host}:{port}"),
            _ => host.to_string(),
        };
        let path = percent_decode(path.trim_end_matches('/'));
        if path.is_empty() {
            return Err(bad("no bucket in the path (s3://host/BUCKET)"));
        }
        Ok(S3Store {
            endpoint: format!("{http}://{host}"),
            host,
            path: sigv4::encode_path(&format!("/{path}")),
            region,
            access_key,
            secret_key,
            shown,
            agent: options.http_agent(),
            clock: system_clock,
            offset: AtomicI64::new(0),
            skew_found: AtomicBool::new(false),
        })
    }

    /// The same store reading the time from `clock` (a node whose clock is off, in tests).
    pub fn with_clock(mut self, clock: Clock) -> S3Store {
        self.clock = clock;
        self
    }

    /// How far the node's clock was found off the store's (seconds, store minus node),
    /// once a request had to be signed again with the store's time.
    pub fn clock_offset(&self) -> Option<i64> {
        self.skew_found
            .load(Ordering::Relaxed)
            .then(|| self.offset.load(Ordering::Relaxed))
    }

    /// Headers for a request at `now` (signed when there is a secret).
    fn headers(
        &self,
        method: &str,
        key_path: &str,
        query: &str,
        payload: &str,
        now: i64,
    ) -> Vec<(String, String)> {
        let date = sigv4::amz_date(now);
        let mut headers = vec![
            ("x-amz-content-sha256".to_string(), payload.to_string()),
            ("x-amz-date".to_string(), date.clone()),
        ];
        if let Some(secret) = &self.secret_key {
            let signer = Signer {
                access_key: &self.access_key,
                secret_key: secret,
                region: &self.region,
                service: "s3",
            };
            let request = sigv4::Request {
                method,
                path: key_path,
                query,
                headers: &[
                    ("host", &self.host),
                    ("x-amz-content-sha256", payload),
                    ("x-amz-date", &date),
                ],
                payload_sha256: payload,
            };
            headers.push((
                "Authorization".into(),
                signer.authorization(&request, &date),
            ));
        }
        headers
    }

    /// Sends one request (`body` for a PUT; `query` canonical: sorted, encoded), signed
    /// again with the store's time once when the store says the node's clock is off. Ok:
    /// the 2xx answer, or `None` when the object does not exist (a missing bucket is an
    /// error).
    pub(super) fn send(
        &self,
        method: &str,
        key_path: &str,
        query: &str,
        body: Option<&[u8]>,
    ) -> Result<Option<ureq::http::Response<ureq::Body>>, StoreError> {
        let payload = body.map_or_else(|| EMPTY_SHA256.to_string(), sigv4::sha256_hex);
        let url = match query {
            "" => format!("{}{key_path}", self.endpoint),
            query => format!("{}{key_path}?{query}", self.endpoint),
        };
        for attempt in 0..2 {
            let now = (self.clock)() + self.offset.load(Ordering::Relaxed);
            let headers = self.headers(method, key_path, query, &payload, now);
            let result = match body {
                Some(body) => {
                    let mut request = self.agent.put(&url);
                    for (name, value) in &headers {
                        request = request.header(name, value);
                    }
                    request.send(body)
                }
                None => {
                    let mut request = self.agent.get(&url);
                    for (name, value) in &headers {
                        request = request.header(name, value);
                    }
                    request.call()
                }
            };
            let response = result.map_err(|e| StoreError::Unavailable(e.to_string()))?;
            if response.status().is_success() {
                return Ok(Some(response));
            }
            let error = S3Error::from_response(response);
            if error.status == 404 && error.code != "NoSuchBucket" {
                return Ok(None);
            }
            match error.server_time {
                Some(server) if attempt == 0 && error.is_skew(now) => {
                    let offset = server - (self.clock)();
                    log::warn!(
                        "{}: the node's clock is off the store's by {offset:+} s; signing with the store's time",
                        self.shown
                    );
                    self.offset.store(offset, Ordering::Relaxed);
                    self.skew_found.store(true, Ordering::Relaxed);
                }
                _ => return Err(error.into_store_error(&format!("{method} {key_path}: "))),
            }
        }
        Err(StoreError::Denied(format!(
            "{method} {key_path}: refused again after signing with the store's time"
        )))
    }

    fn key_path(&self, id: &[u8; 32]) -> String {
        format!("{}/{}", self.path, hex(id))
    }

    /// The bucket's path (`/bucket`), encoded.
    pub(super) fn bucket_path(&self) -> &str {
        &self.path
    }
}

impl BlockStore for S3Store {
    fn get(&self, id: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        match self.send("GET", &self.key_path(id), "", None)? {
            Some(response) => {
                super::http_blob(response, "", "access denied")?.ok_or(StoreError::NotFound)
            }
            None => Err(StoreError::NotFound),
        }
    }

    fn put(&self, id: &[u8; 32], blob: &[u8]) -> Result<(), StoreError> {
        match self.send("PUT", &self.key_path(id), "", Some(blob))? {
            Some(_) => Ok(()),
            None => Err(StoreError::Unavailable(format!(
                "PUT {}: HTTP 404 (see the store's logs)",
                self.key_path(id)
            ))),
        }
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn clock_offset(&self) -> Option<i64> {
        S3Store::clock_offset(self)
    }

    fn put_object(&self, key: &ObjectKey, data: &[u8]) -> Result<(), StoreError> {
        objects::s3_put(self, key, data)
    }

    fn get_object(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
        objects::s3_get(self, key)
    }

    fn list_objects(&self, prefix: &ObjectKey) -> Result<Vec<ObjectKey>, StoreError> {
        objects::s3_list(self, prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(url: &str) -> S3Store {
        S3Store::new(url, &StoreOptions::default()).unwrap()
    }

    #[test]
    fn urls() {
        let s = store("s3://AK:S%2FK@127.0.0.1:19000/flbucket?region=garage");
        assert_eq!(
            (
                s.endpoint.as_str(),
                s.host.as_str(),
                s.path.as_str(),
                s.region.as_str()
            ),
            (
                "http://127.0.0.1:19000",
                "127.0.0.1:19000",
                "/flbucket",
                "garage"
            )
        );
        assert_eq!(s.secret_key.as_deref(), Some("S/K"));
        assert!(!s.describe().contains("S/K") && !s.describe().contains("S%2FK"));
        // A raw secret with '/', '+' and '=' (as AWS issues them) is the secret, whole.
        let s = store("s3s://AK:wJal/K7+bP=@s3.example.com/b?region=garage");
        assert_eq!(s.secret_key.as_deref(), Some("wJal/K7+bP="));
        assert_eq!(s.endpoint, "https://s3.example.com");
        assert_eq!(s.host, "s3.example.com", "the default port is not in Host");
        // The scheme's default port, written or not, is left out of Host as ureq does.
        assert_eq!(store("s3s://AK:SK@h:443/b").host, "h");
        assert_eq!(store("s3://AK:SK@h:80/b").host, "h");
        assert_eq!(store("s3://AK:SK@h/b").endpoint, "http://h");
        assert_eq!(store("s3s://AK:SK@h:80/b").host, "h:80");
        assert_eq!(store("s3://[::1]:9000/b/p").host, "[::1]:9000");
        assert_eq!(store("s3://h:9/my%20bucket/a b").path, "/my%20bucket/a%20b");
        let unsigned = store("s3s://host:443/b/prefix");
        assert_eq!(
            unsigned.headers("GET", "/b/x", "", EMPTY_SHA256, 0).len(),
            2,
            "no Authorization without a secret"
        );
        for (url, says) in [
            ("s3://AK:SK@h:99999/b", "host[:port]"),
            ("s3://AK:SK@h:9000", "no bucket"),
            ("s3://AK:SK@/b", "host[:port]"),
            ("s3x://h/b", "expected s3://"),
        ] {
            let err = S3Store::new(url, &StoreOptions::default()).err().unwrap();
            assert!(err.to_string().contains(says), "{url}: {err}");
            assert!(!err.to_string().contains("SK"), "{err}");
        }
    }

    #[test]
    fn signed_host_is_the_sent_host() {
        let s = store("s3s://AK:SK@s3.example.com/b?region=garage");
        let headers = s.headers("GET", "/b/x", "", EMPTY_SHA256, 1_369_353_600);
        let auth = &headers
            .iter()
            .find(|(n, _)| n == "Authorization")
            .unwrap()
            .1;
        let expected = Signer {
            access_key: "AK",
            secret_key: "SK",
            region: "garage",
            service: "s3",
        }
        .authorization(
            &sigv4::Request {
                method: "GET",
                path: "/b/x",
                query: "",
                headers: &[
                    ("host", "s3.example.com"),
                    ("x-amz-content-sha256", EMPTY_SHA256),
                    ("x-amz-date", "20130524T000000Z"),
                ],
                payload_sha256: EMPTY_SHA256,
            },
            "20130524T000000Z",
        );
        assert_eq!(auth, &expected);
    }

    #[test]
    fn error_answers_name_the_code_and_what_to_do() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message><RequestId>1</RequestId></Error>";
        let error = S3Error::parse(403, body, None);
        assert_eq!(error.code, "SignatureDoesNotMatch");
        let shown = error.into_store_error("GET /b/x: ").to_string();
        assert!(
            shown.starts_with(
                "denied: GET /b/x: HTTP 403 SignatureDoesNotMatch: The request signature"
            ) && shown.contains("secret key is wrong"),
            "{shown}"
        );
        let bucket = S3Error::parse(400, "<Error><Code>InvalidBucketName</Code></Error>", None);
        assert!(bucket
            .into_store_error("")
            .to_string()
            .contains("3-63 characters"));
        let bare = S3Error::parse(502, "<html>bad gateway</html>", None);
        assert_eq!(
            bare.into_store_error("").to_string(),
            "unavailable: HTTP 502 (see the store's logs)"
        );
    }

    #[test]
    fn skew_is_recognised_by_code_or_by_the_servers_date() {
        let now = 1_700_000_000;
        let skewed = S3Error::parse(
            403,
            "<Error><Code>RequestTimeTooSkewed</Code><ServerTime>2023-11-15T01:13:20Z</ServerTime></Error>",
            None,
        );
        assert!(skewed.is_skew(now));
        assert_eq!(skewed.server_time, Some(now + 3 * 3600));
        let dated = S3Error::parse(
            403,
            "<Error><Code>AccessDenied</Code></Error>",
            Some(now - 7200),
        );
        assert!(dated.is_skew(now), "a 403 from a server two hours behind");
        let close = S3Error::parse(403, "", Some(now + 60));
        assert!(!close.is_skew(now), "a minute is within S3's 15");
    }
}
