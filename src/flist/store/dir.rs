//! `dir:///path`: blobs as files, `path/hh/H` (current rfs) or `path/H` (rfs ≤ 2.0.7).

use super::objects::ObjectKey;
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

    fn put_object(&self, key: &ObjectKey, data: &[u8]) -> Result<(), StoreError> {
        let path = self.root.join(key.as_str());
        let fail = |e: std::io::Error| StoreError::Unavailable(format!("{}: {e}", path.display()));
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(fail)?;
        // Whole or not at all: a reader never sees half a report.
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&temporary, data)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&temporary);
                fail(e)
            })
    }

    fn get_object(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
        let path = self.root.join(key.as_str());
        match std::fs::read(&path) {
            Ok(data) => Ok(data),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound),
            Err(e) => Err(StoreError::Unavailable(format!("{}: {e}", path.display()))),
        }
    }

    fn list_objects(&self, prefix: &ObjectKey) -> Result<Vec<ObjectKey>, StoreError> {
        let top = self.root.join(prefix.as_str());
        if !self.root.is_dir() {
            return Err(StoreError::Unavailable(format!(
                "{}: no such directory",
                self.root.display()
            )));
        }
        let mut keys = Vec::new();
        // Depth-bounded, and a name that is not a key (a temporary file) is skipped.
        let mut pending = vec![(top, prefix.clone(), 0)];
        while let Some((dir, key, depth)) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(child) = key.join(&entry.file_name().to_string_lossy()) else {
                    continue;
                };
                match entry.file_type() {
                    Ok(t) if t.is_dir() && depth < 8 => {
                        pending.push((entry.path(), child, depth + 1))
                    }
                    Ok(t) if t.is_file() => keys.push(child),
                    _ => {}
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn describe(&self) -> String {
        format!("dir://{}", self.root.display())
    }
}
