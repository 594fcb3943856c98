//! `http(s)://base`: `GET base/hh/H`, and on a 404 `GET base/H` (flat stores), the way
//! rfs appends path segments. The layout that answered is learnt: once a block came from
//! `base/H`, the flat path is asked first, so a flat store costs one request per block
//! instead of a 404 and a 200 (the other path is still tried: a mixed store works). `server://`: rfs's fl-server, `GET base/api/v1/block/H`.
//! One agent per store, so connections are reused; TLS always verified (bundled web
//! roots, or the CAs of `--ca-file`).

use super::objects::ObjectKey;
use super::{redact, BlockStore, StoreError, StoreOptions};
use crate::flist::codec::hex;

enum Layout {
    /// `base/hh/H`, then `base/H`.
    Blocks,
    /// `base/api/v1/block/H`.
    Server,
}

/// An HTTP(S) store.
pub struct HttpStore {
    base: String,
    shown: String,
    agent: ureq::Agent,
    layout: Layout,
    /// The last block of a [`Layout::Blocks`] store came from the flat path.
    flat_first: std::sync::atomic::AtomicBool,
}

impl HttpStore {
    /// A store of 2-level (or flat) blobs under `url`.
    pub fn new(url: &str, options: &StoreOptions) -> Result<HttpStore, StoreError> {
        Self::with_layout(url, options, Layout::Blocks)
    }

    /// An rfs fl-server at `url`.
    pub fn server(url: &str, options: &StoreOptions) -> Result<HttpStore, StoreError> {
        Self::with_layout(url, options, Layout::Server)
    }

    fn with_layout(
        url: &str,
        options: &StoreOptions,
        layout: Layout,
    ) -> Result<HttpStore, StoreError> {
        let (base, _query) = url.split_once('?').unwrap_or((url, ""));
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(StoreError::BadUrl(format!(
                "{}: expected http:// or https://",
                redact(url)
            )));
        }
        Ok(HttpStore {
            base: base.trim_end_matches('/').to_string(),
            shown: redact(url),
            agent: options.http_agent(),
            layout,
            flat_first: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn fetch(&self, url: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let shown = redact(url);
        let response = self
            .agent
            .get(url)
            .call()
            .map_err(|e| StoreError::Unavailable(format!("{shown}: {e}")))?;
        super::http_blob(response, &format!("{shown}: "), "access denied")
    }
}

impl BlockStore for HttpStore {
    fn get(&self, id: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        let name = hex(id);
        use std::sync::atomic::Ordering;
        let flat_first = self.flat_first.load(Ordering::Relaxed);
        // (url, is it the flat path)
        let urls = match self.layout {
            Layout::Blocks => {
                let nested = (format!("{}/{}/{name}", self.base, &name[..2]), false);
                let flat = (format!("{}/{name}", self.base), true);
                if flat_first {
                    vec![flat, nested]
                } else {
                    vec![nested, flat]
                }
            }
            Layout::Server => vec![(format!("{}/api/v1/block/{name}", self.base), false)],
        };
        for (url, flat) in urls {
            if let Some(data) = self.fetch(&url)? {
                if flat != flat_first && matches!(self.layout, Layout::Blocks) {
                    self.flat_first.store(flat, Ordering::Relaxed);
                }
                return Ok(data);
            }
        }
        Err(StoreError::NotFound)
    }

    fn put_object(&self, key: &ObjectKey, data: &[u8]) -> Result<(), StoreError> {
        let url = format!("{}/{key}", self.base);
        let shown = redact(&url);
        let response = self
            .agent
            .put(&url)
            .header("content-type", "application/json")
            .send(data)
            .map_err(|e| StoreError::Unavailable(format!("PUT {shown}: {e}")))?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            status @ (401 | 403) => Err(StoreError::Denied(format!(
                "PUT {shown}: HTTP {status} (the server refuses this node's upload)"
            ))),
            status => Err(StoreError::Unavailable(format!(
                "PUT {shown}: HTTP {status}"
            ))),
        }
    }

    fn get_object(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
        self.fetch(&format!("{}/{key}", self.base))?
            .ok_or(StoreError::NotFound)
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}
