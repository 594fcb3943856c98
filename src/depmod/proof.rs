//! A maps proof in a modules flist: `initagent flist pack` of a module directory whose
//! maps pass the deep check (every index parsed, text and binary maps alike, the module
//! set and the modules' release) tags the manifest with the release and the manifest's
//! content digest ([`crate::flist::meta::Manifest::content_digest`]: every inode and
//! every block key). On a node, a mounted flist whose manifest still has that content —
//! nothing added, removed or changed since the pack, whatever tool touched it — has maps
//! that were proven for exactly this tree: the maps check neither fetches the content
//! stamp nor compares it, and takes no time on the boot's path.

use crate::flist::meta::Manifest;
use std::path::Path;

/// The manifest tag: `<release> <content digest in hex>`.
pub const TAG: &str = "initagent.maps";

/// Why a module directory's maps were not proven (the check's failures, or what is
/// missing for a proof).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotProven(pub String);

impl std::fmt::Display for NotProven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs the deep check on the module directory `dir` (named by its release, as under
/// `lib/modules`) and, when it has a content stamp, compares the stamp with `packed`
/// (the flist packed from it) as a node would; returns the release when all of it passes
/// and the modules are known to be built for it.
pub fn prove(dir: &Path, packed: std::sync::Arc<Manifest>) -> Result<String, NotProven> {
    let release = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| NotProven(format!("{}: no release in the path", dir.display())))?;
    let report = super::check::check_dir(dir, &release, None, true);
    if let Some(error) = &report.error {
        return Err(NotProven(error.clone()));
    }
    let failed: Vec<String> = report
        .failed()
        .iter()
        .map(|c| format!("{}: {}", c.id, c.reasons.join("; ")))
        .collect();
    if !failed.is_empty() {
        return Err(NotProven(failed.join(" | ")));
    }
    let vermagic_known = report
        .checks
        .iter()
        .any(|c| c.id == "vermagic" && c.status == super::check::Status::Pass);
    if !vermagic_known {
        return Err(NotProven(
            "the modules' release could not be read (no vermagic)".into(),
        ));
    }
    super::check::stamp_matches_flist(dir, &release, packed)
        .map_err(|why| NotProven(format!("the packed tree does not match the stamp: {why}")))?;
    Ok(release)
}

/// The tag's value for `release` and a manifest's content digest.
pub fn tag_value(release: &str, digest: &[u8; 32]) -> String {
    format!("{release} {}", crate::flist::codec::hex(digest))
}

/// Whether `manifest` carries a proof for `release` and still holds the tree it was
/// made for.
pub fn holds(manifest: &Manifest, release: &str) -> bool {
    let Some((tagged_release, tagged_digest)) = manifest
        .tags()
        .get(TAG)
        .and_then(|value| value.split_once(' '))
    else {
        return false;
    };
    tagged_release == release
        && manifest
            .content_digest()
            .is_ok_and(|digest| crate::flist::codec::hex(&digest) == tagged_digest)
}
