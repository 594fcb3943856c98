//! A kernel's module directory (`<root>/lib/modules/<release>`) and its binary indexes,
//! read once into memory. Lookups go through the pure index reader; a missing or corrupt
//! index is recorded in [`ModuleTree::problems`] and answers nothing, as in libkmod.

use super::index::{Index, Value};
use super::text::DepLine;
use std::path::{Path, PathBuf};

/// The five binary indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexFile {
    /// `modules.dep.bin`: name → dependency line.
    Dep,
    /// `modules.alias.bin`: alias pattern → module.
    Alias,
    /// `modules.symbols.bin`: `symbol:NAME` → module.
    Symbols,
    /// `modules.builtin.bin`: built-in module names.
    Builtin,
    /// `modules.builtin.alias.bin`: aliases of built-in modules.
    BuiltinAlias,
}

impl IndexFile {
    /// All of them.
    pub const ALL: [IndexFile; 5] = [
        IndexFile::Dep,
        IndexFile::Alias,
        IndexFile::Symbols,
        IndexFile::Builtin,
        IndexFile::BuiltinAlias,
    ];

    /// File name in the module directory.
    pub fn file_name(self) -> &'static str {
        match self {
            IndexFile::Dep => "modules.dep.bin",
            IndexFile::Alias => "modules.alias.bin",
            IndexFile::Symbols => "modules.symbols.bin",
            IndexFile::Builtin => "modules.builtin.bin",
            IndexFile::BuiltinAlias => "modules.builtin.alias.bin",
        }
    }
}

/// Errors opening a module tree.
#[derive(Debug, Clone, PartialEq)]
pub enum TreeError {
    /// The module directory does not exist.
    NoModuleDir(PathBuf),
}

impl std::fmt::Display for TreeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TreeError::NoModuleDir(dir) => write!(
                f,
                "{}: no module directory for this kernel (check --root/--kernel, or the modules flist mount)",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for TreeError {}

/// A module directory with its indexes loaded: `modules.symbols.bin` (the largest, and
/// needed only for `symbol:` requests) when first asked for, the others at once.
pub struct ModuleTree {
    /// `<root>/lib/modules/<release>`.
    pub dir: PathBuf,
    /// Kernel release.
    pub release: String,
    indexes: [std::sync::OnceLock<Option<Vec<u8>>>; 5],
    /// Where regenerated maps are read from instead, for the index read later.
    regenerated: Option<PathBuf>,
    /// Index files that are missing or unreadable or corrupt, one line each (an index
    /// read when first asked for logs its problem instead).
    pub problems: Vec<String>,
}

/// Read when first asked for.
const LAZY: IndexFile = IndexFile::Symbols;

/// Reads and checks one index: from `regenerated` when it has the file, else from `dir`.
fn read_index(dir: &Path, regenerated: Option<&Path>, which: IndexFile) -> Result<Vec<u8>, String> {
    let path = regenerated
        .map(|r| r.join(which.file_name()))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| dir.join(which.file_name()));
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Index::new(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes)
}

impl ModuleTree {
    /// Opens `<root>/lib/modules/<release>` and reads its indexes; an index present in
    /// `regenerated` (maps `depmod ensure` rebuilt) is read from there instead.
    pub fn open(
        root: &Path,
        release: &str,
        regenerated: Option<&Path>,
    ) -> Result<ModuleTree, TreeError> {
        let dir = root.join("lib/modules").join(release);
        if !dir.is_dir() {
            return Err(TreeError::NoModuleDir(dir));
        }
        let mut problems = Vec::new();
        let indexes = IndexFile::ALL.map(|which| {
            let index = std::sync::OnceLock::new();
            if which != LAZY {
                let _ = index.set(
                    read_index(&dir, regenerated, which)
                        .map_err(|e| problems.push(e))
                        .ok(),
                );
            }
            index
        });
        Ok(ModuleTree {
            dir,
            release: release.to_string(),
            indexes,
            regenerated: regenerated.map(Path::to_path_buf),
            problems,
        })
    }

    /// A tree over in-memory indexes (tests, and maps regenerated in process).
    pub fn from_indexes(dir: PathBuf, release: &str, indexes: [Option<Vec<u8>>; 5]) -> ModuleTree {
        ModuleTree {
            dir,
            release: release.to_string(),
            indexes: indexes.map(std::sync::OnceLock::from),
            regenerated: None,
            problems: Vec::new(),
        }
    }

    fn index(&self, which: IndexFile) -> Option<Index<'_>> {
        let bytes = self.indexes[which as usize].get_or_init(|| {
            read_index(&self.dir, self.regenerated.as_deref(), which)
                .map_err(|e| log::warn!("{e}"))
                .ok()
        });
        Index::new(bytes.as_deref()?).ok()
    }

    fn record<T>(
        &self,
        which: IndexFile,
        result: Result<T, super::index::IndexError>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                log::warn!("{}: {e}", self.dir.join(which.file_name()).display());
                None
            }
        }
    }

    /// Every key of index `which` with its values, in byte order (kmod's index dump).
    pub fn for_each_entry(&self, which: IndexFile, mut f: impl FnMut(&[u8], Vec<String>)) {
        let Some(index) = self.index(which) else {
            return;
        };
        let walked = index.for_each(|key, values| f(key, values.iter().map(Value::text).collect()));
        self.record(which, walked);
    }

    /// The dependency line of module `name` (first value of `modules.dep.bin`).
    pub fn dep_line(&self, name: &str) -> Option<DepLine> {
        let index = self.index(IndexFile::Dep)?;
        let values = self.record(IndexFile::Dep, index.lookup(name.as_bytes()))?;
        DepLine::parse(&values.first()?.text())
    }

    /// Wildcard matches of `input` in an alias-style index, by priority.
    pub fn search(&self, which: IndexFile, input: &str) -> Vec<String> {
        let Some(index) = self.index(which) else {
            return Vec::new();
        };
        self.record(which, index.search_wild(input.as_bytes()))
            .unwrap_or_default()
            .iter()
            .map(Value::text)
            .collect()
    }

    /// Whether `name` is built into the kernel (`modules.builtin.bin`).
    pub fn is_builtin(&self, name: &str) -> bool {
        self.index(IndexFile::Builtin)
            .and_then(|index| self.record(IndexFile::Builtin, index.lookup(name.as_bytes())))
            .is_some_and(|values| !values.is_empty())
    }

    /// Absolute path of a module path taken from `modules.dep`. A relative path must
    /// stay inside the tree: one that leads out through `..` or a symlink is refused (the
    /// maps come from the network or from a tree someone else built). Absolute paths are
    /// taken as they are, as kmod does, for external module directories.
    pub fn module_path(&self, relative: &str) -> Result<PathBuf, String> {
        if relative.starts_with('/') {
            return Ok(PathBuf::from(relative));
        }
        let path = self.dir.join(relative);
        if Path::new(relative)
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!(
                "modules.dep path {relative:?} leads out of {} through '..'",
                self.dir.display()
            ));
        }
        // The common case in one look; a symlink on the way (or no `openat2`) is
        // followed to where it leads.
        if crate::sys::stays_beneath(&self.dir, relative) {
            return Ok(path);
        }
        if let (Ok(real), Ok(dir)) = (path.canonicalize(), self.dir.canonicalize()) {
            if !real.starts_with(&dir) {
                return Err(format!(
                    "modules.dep path {relative:?} leads out of {} through a symlink (to {})",
                    self.dir.display(),
                    real.display()
                ));
            }
        }
        Ok(path)
    }
}

#[cfg(test)]
mod path_tests {
    use super::*;

    #[test]
    fn module_paths_that_leave_the_tree_are_refused() {
        let root = std::env::temp_dir().join(format!("initagent-tree-{}", std::process::id()));
        let dir = root.join("lib/modules/6.1.0-0-test");
        std::fs::create_dir_all(dir.join("kernel")).unwrap();
        std::fs::write(root.join("outside.ko"), b"x").unwrap();
        std::fs::write(dir.join("kernel/inside.ko"), b"x").unwrap();
        std::os::unix::fs::symlink(root.join("outside.ko"), dir.join("kernel/evil.ko")).unwrap();
        std::os::unix::fs::symlink("inside.ko", dir.join("kernel/alias.ko")).unwrap();
        std::os::unix::fs::symlink("../../../../outside.ko", dir.join("kernel/up.ko")).unwrap();
        let tree = ModuleTree::open(&root, "6.1.0-0-test", None).unwrap();
        assert_eq!(
            tree.module_path("kernel/inside.ko").unwrap(),
            dir.join("kernel/inside.ko")
        );
        // A symlink that stays inside, and a file not there yet, are fine.
        assert!(tree.module_path("kernel/alias.ko").is_ok());
        assert!(tree.module_path("kernel/later.ko").is_ok());
        // Absolute paths are kmod's external module directories.
        assert_eq!(
            tree.module_path("/opt/m.ko").unwrap(),
            PathBuf::from("/opt/m.ko")
        );
        let dots = tree
            .module_path("kernel/../../../../outside.ko")
            .unwrap_err();
        assert!(
            dots.contains("through '..'") && dots.contains("outside.ko"),
            "{dots}"
        );
        let link = tree.module_path("kernel/evil.ko").unwrap_err();
        assert!(link.contains("through a symlink"), "{link}");
        let up = tree.module_path("kernel/up.ko").unwrap_err();
        assert!(up.contains("through a symlink"), "{up}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
