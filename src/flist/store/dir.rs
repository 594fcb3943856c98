//! `dir:///path`: blobs as files, `path/hh/H` (current rfs) or `path/H` (rfs ≤ 2.0.7).

use super::{BlockStore, StoreError};
use crate::flist::codec::hex;
use std::path::PathBuf;

/// A directory store.
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// `rest` is what follows `dir://`: an absolute path.
    pub fn new(rest: &str) -> Result<DirStore, StoreError> {
        let path = rest.split(['?', '#']).next().unwrap_or_default();
        if !path.starts_with('/') {
            return Err(StoreError::BadUrl(format!(
                "dir://{rest}: the path must be absolute (dir:///path)"
            )));
        }
        Ok(DirStore {
            root: PathBuf::from(path),
        })
    }
}

impl BlockStore for DirStore {
    fn get(&self, id: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        let name = hex(id);
        for path in [
            self.root.join(&name[..2]).join(&name),
            self.root.join(&name),
        ] {
            match std::fs::read(&path) {
                Ok(data) => return Ok(data),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::Unavailable(format!("{}: {e}", path.display()))),
            }
        }
        if !self.root.is_dir() {
            return Err(StoreError::Unavailable(format!(
                "{}: no such directory",
                self.root.display()
            )));
        }
        Err(StoreError::NotFound)
    }

    fn put(&self, id: &[u8; 32], blob: &[u8]) -> Result<(), StoreError> {
        let name = hex(id);
        let dir = self.root.join(&name[..2]);
        let path = dir.join(&name);
        if path.exists() {
            return Ok(()); // content-addressed: already there
        }
        let fail = |e: std::io::Error| StoreError::Unavailable(format!("{}: {e}", path.display()));
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&temporary, blob).map_err(fail)?;
        std::fs::rename(&temporary, &path).map_err(fail)
    }

    fn describe(&self) -> String {
        format!("dir://{}", self.root.display())
    }
}
