//! Block stores: where an flist's blobs live: `dir://`, `http(s)://`, `s3://`/`s3s://`
//! (SigV4), `zdb://` (redis protocol) and `server://` (the rfs fl-server). Every request
//! has a connect and a total deadline.
//! Credentials in URLs never reach logs, errors or the report: [`redact`] everything
//! shown (and every sink masks what slips through with [`crate::redact::text`]).

mod dir;
mod http;
pub mod objects;
mod resolve;
pub mod resp;
pub mod s3;
pub mod sigv4;
mod zdb;

use std::sync::Arc;
use std::time::Duration;

/// The largest stored blob a store may return (a 512 KiB block, compressed and sealed,
/// is never near it); more is refused rather than buffered.
pub(crate) const MAX_BLOB: usize = 1024 * 1024;

/// A store that holds encrypted blobs by id.
pub trait BlockStore: Send + Sync {
    /// Fetches the stored blob with this id.
    fn get(&self, id: &[u8; 32]) -> Result<Vec<u8>, StoreError>;
    /// Stores a blob under its id (stores that cannot be written say so).
    fn put(&self, _id: &[u8; 32], _blob: &[u8]) -> Result<(), StoreError> {
        Err(StoreError::BadUrl(format!(
            "{}: this store cannot be written to",
            self.describe()
        )))
    }
    /// Writes a named object beside the blobs (a boot report under `reports/`), whole or
    /// not at all.
    fn put_object(&self, key: &objects::ObjectKey, _data: &[u8]) -> Result<(), StoreError> {
        Err(objects::unsupported(self.describe(), "written to", key))
    }
    /// Reads a named object.
    fn get_object(&self, key: &objects::ObjectKey) -> Result<Vec<u8>, StoreError> {
        Err(objects::unsupported(self.describe(), "read by name", key))
    }
    /// The keys of the named objects under `prefix` (every level below it).
    fn list_objects(
        &self,
        prefix: &objects::ObjectKey,
    ) -> Result<Vec<objects::ObjectKey>, StoreError> {
        Err(objects::unsupported(self.describe(), "listed", prefix))
    }
    /// The store's URL with credentials removed.
    fn describe(&self) -> String;
    /// How far the node's clock was found off the store's, in seconds (store minus node),
    /// when requests had to be signed with the store's time (S3).
    fn clock_offset(&self) -> Option<i64> {
        None
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store does not have the block.
    NotFound,
    /// The store could not answer (refused, reset, 5xx, timeout…): worth retrying.
    Unavailable(String),
    /// The store refused us (wrong credentials): retrying will not help.
    Denied(String),
    /// The URL cannot be used.
    BadUrl(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound => write!(f, "not found"),
            StoreError::Unavailable(why) => write!(f, "unavailable: {why}"),
            StoreError::Denied(why) => write!(f, "denied: {why}"),
            StoreError::BadUrl(why) => write!(f, "unusable store URL: {why}"),
        }
    }
}

/// Deadlines and trust for store requests.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Time for a whole request.
    pub request_timeout: Duration,
    /// Certificate authorities trusted instead of the bundled web roots (a private store's
    /// CA, from `--ca-file`).
    pub private_roots: Option<Arc<Vec<ureq::tls::Certificate<'static>>>>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(15),
            private_roots: None,
        }
    }
}

impl StoreOptions {
    /// These options trusting the CAs of `ca_file` (when one is given) instead of the
    /// bundled web roots.
    pub fn with_ca_file(mut self, ca_file: Option<&std::path::Path>) -> Result<Self, String> {
        if let Some(path) = ca_file {
            self.private_roots = Some(Arc::new(load_ca_file(path)?));
        }
        Ok(self)
    }

    /// An HTTP agent with these deadlines and this trust. Certificates are always verified:
    /// against the bundled web roots, or against the private CAs when some were given.
    pub(crate) fn http_agent(&self) -> ureq::Agent {
        let roots = match &self.private_roots {
            Some(certs) => ureq::tls::RootCerts::Specific(certs.clone()),
            None => ureq::tls::RootCerts::WebPki,
        };
        let config = ureq::Agent::config_builder()
            // Every concurrent fetch (the FUSE threads and the prefetch pool, a mount
            // daemon and stage 1's prefetch) must find its connection again: ureq keeps 3
            // per host by default, so the others were closed after each burst and opened
            // again (a TCP and TLS handshake per block).
            .max_idle_connections_per_host(IDLE_CONNECTIONS)
            .max_idle_connections(4 * IDLE_CONNECTIONS)
            .timeout_connect(Some(self.connect_timeout))
            .timeout_global(Some(self.request_timeout))
            .http_status_as_error(false)
            .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
            .build();
        ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::new(),
            resolve::CachingResolver::default(),
        )
    }
}

/// Idle connections kept per host: more than the fetches that run at once.
const IDLE_CONNECTIONS: usize = 16;

/// Reads the PEM certificates of a CA file (for stores behind a private CA).
pub fn load_ca_file(
    path: &std::path::Path,
) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("CA file {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => return Err(format!("CA file {}: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "CA file {}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// A blob from an HTTP response: `None` on 404; 401/403 denied (with `denied_hint`), any
/// other status unavailable; the body bounded by [`MAX_BLOB`]. `context` prefixes errors.
pub(crate) fn http_blob(
    response: ureq::http::Response<ureq::Body>,
    context: &str,
    denied_hint: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    match response.status().as_u16() {
        200 => {}
        404 => return Ok(None),
        status @ (401 | 403) => {
            return Err(StoreError::Denied(format!(
                "{context}HTTP {status} ({denied_hint})"
            )))
        }
        status => return Err(StoreError::Unavailable(format!("{context}HTTP {status}"))),
    }
    // Sized once from Content-Length (bounded): growing by doubling would map and
    // copy the blob several times over.
    let announced = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let data = crate::flist::buffers::read_all(
        &mut response.into_body().into_reader(),
        announced,
        MAX_BLOB + 1,
    )
    .map_err(|e| StoreError::Unavailable(format!("{context}{e}")))?;
    if data.len() > MAX_BLOB {
        return Err(StoreError::Unavailable(format!(
            "{context}blob larger than {MAX_BLOB} bytes"
        )));
    }
    Ok(Some(data))
}

/// Removes the password (and, for S3, the secret) from a URL for display: the one rule of
/// [`crate::redact`].
pub fn redact(url: &str) -> String {
    crate::redact::url(url)
}

/// Opens a store from its URL.
pub fn open(url: &str, options: &StoreOptions) -> Result<Arc<dyn BlockStore>, StoreError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| StoreError::BadUrl(format!("{}: no scheme", redact(url))))?;
    match scheme {
        "dir" => Ok(Arc::new(dir::DirStore::new(rest)?)),
        "http" | "https" => Ok(Arc::new(http::HttpStore::new(url, options)?)),
        "s3" | "s3s" => Ok(Arc::new(s3::S3Store::new(url, options)?)),
        "zdb" => Ok(Arc::new(zdb::ZdbStore::new(url, options)?)),
        "server" => {
            // server://http://host:port (as pack stores it) or server://http/host:port.
            let base = match rest.split_once("://") {
                Some(_) => rest.to_string(),
                None => rest.replacen('/', "://", 1),
            };
            Ok(Arc::new(http::HttpStore::server(&base, options)?))
        }
        other => Err(StoreError::BadUrl(format!(
            "{}: unknown store scheme {other}:// (dir, http, https, s3, s3s, zdb, server)",
            redact(url)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        assert_eq!(
            redact("s3://AK:SECRET@host:9000/b?region=x"),
            "s3://AK:***@host:9000/b?region=x"
        );
        assert_eq!(redact("zdb://host:9900/ns"), "zdb://host:9900/ns");
        assert_eq!(redact("https://user:pw@h/p"), "https://user:***@h/p");
        assert_eq!(redact("s3://AK@host:1/b"), "s3://AK@host:1/b");
        assert_eq!(redact("garbage"), "garbage");
    }

    #[test]
    fn unknown_schemes_are_clear_errors() {
        let err = open("ftp://x/y", &StoreOptions::default()).err().unwrap();
        assert!(err.to_string().contains("ftp://"));
        assert!(open("nonsense", &StoreOptions::default()).is_err());
    }
}
