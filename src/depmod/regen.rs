//! Regenerating the dependency maps without a depmod binary: each module's `.modinfo`
//! (`depends=`, `alias=`, `softdep=`) is read, dependencies are closed transitively and
//! ordered so the reversed line is a load order, and the text and binary maps are written
//! as depmod writes them. Ranks follow `modules.order`. Exported symbols are not
//! resolved (that needs ELF symbol tables): `modules.symbols` comes out empty, which only
//! matters for the kernel's rare `symbol:` requests.

use super::view::TreeView;
use crate::kmod::{compress, elf::Modinfo, index, name, text};
use std::collections::{BTreeMap, HashMap};

/// Regenerated map files, by name.
#[derive(Debug, Default)]
pub struct Regenerated {
    /// File name → content.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Modules indexed.
    pub modules: usize,
    /// What was odd (duplicate names, unknown dependencies, cycles).
    pub warnings: Vec<String>,
}

struct Entry {
    name: String,
    path: String,
    info: Modinfo,
}

/// Reads every module of the tree and writes the maps in memory.
pub fn regenerate(view: &TreeView) -> Result<Regenerated, String> {
    let mut out = Regenerated::default();
    let mut found = view
        .modules()
        .map_err(|e| format!("{}: {e}", view.dir.display()))?;
    found.sort_by(|a, b| a.relative.cmp(&b.relative));
    let order: Vec<String> = view
        .read("modules.order")
        .map(|d| text::parse_paths(&String::from_utf8_lossy(&d)))
        .unwrap_or_default();
    let rank_of: HashMap<String, usize> = order
        .iter()
        .enumerate()
        .map(|(i, p)| (name::modname_from_path(p), i))
        .collect();

    let mut entries: Vec<Entry> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for module in &found {
        let module_name = name::modname_from_path(&module.relative);
        if let Some(&first) = by_name.get(&module_name) {
            out.warnings.push(format!(
                "{}: duplicate of {}; ignored",
                module.relative, entries[first].path
            ));
            continue;
        }
        let data = view
            .read(&module.relative)
            .map_err(|e| format!("{}: {e}", module.relative))?;
        // A file that is no module (garbage, truncated, another format) is listed with
        // no dependencies and no aliases, as kmod's depmod lists it: the rest of the
        // tree keeps working maps, and a load of that one fails with ENOEXEC.
        let info = compress::decompress(&data)
            .map_err(|e| e.to_string())
            .and_then(|plain| Modinfo::from_elf(&plain).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| {
                out.warnings.push(format!(
                    "{}: {e}; listed without dependencies or aliases (as depmod does)",
                    module.relative
                ));
                Modinfo::default()
            });
        by_name.insert(module_name.clone(), entries.len());
        entries.push(Entry {
            name: module_name,
            path: module.relative.clone(),
            info,
        });
    }
    // depmod's rank: modules.order first, in its order; the rest after, by path.
    entries.sort_by_key(|e| {
        (
            rank_of.get(&e.name).copied().unwrap_or(usize::MAX),
            e.path.clone(),
        )
    });
    let position: HashMap<&str, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.as_str(), i))
        .collect();

    let mut dep_text = String::new();
    let mut dep_bin = Vec::new();
    let mut alias_text = String::from("# Aliases extracted from modules themselves.\n");
    let mut alias_bin = Vec::new();
    let mut softdep_text = String::from("# Soft dependencies extracted from modules themselves.\n");
    for (rank, entry) in entries.iter().enumerate() {
        let load_order = closure(entry, &entries, &position, &mut out.warnings);
        let mut line = format!("{}:", entry.path);
        for dep in load_order.iter().rev() {
            line.push(' ');
            line.push_str(&entries[*dep].path);
        }
        dep_text.push_str(&line);
        dep_text.push('\n');
        dep_bin.push((
            entry.name.as_bytes().to_vec(),
            rank as u32,
            line.into_bytes(),
        ));
        for pattern in entry.info.all("alias") {
            alias_text.push_str(&format!("alias {pattern} {}\n", entry.name));
            match name::alias(pattern) {
                Some(key) => alias_bin.push((
                    key.into_bytes(),
                    rank as u32,
                    entry.name.as_bytes().to_vec(),
                )),
                None => out.warnings.push(format!(
                    "{}: alias {pattern:?} has unbalanced brackets; skipped",
                    entry.path
                )),
            }
        }
        for softdep in entry.info.all("softdep") {
            softdep_text.push_str(&format!("softdep {} {softdep}\n", entry.name));
        }
    }

    let builtin_names: Vec<String> = view
        .read("modules.builtin")
        .map(|d| text::parse_paths(&String::from_utf8_lossy(&d)))
        .unwrap_or_default()
        .iter()
        .map(|p| name::modname_from_path(p))
        .collect();
    let builtin_bin: Vec<_> = builtin_names
        .iter()
        .map(|n| (n.as_bytes().to_vec(), 0, Vec::new()))
        .collect();
    let records = view
        .read("modules.builtin.modinfo")
        .map(|d| text::parse_builtin_modinfo(&d).0)
        .unwrap_or_default();
    let builtin_alias_bin: Vec<_> = records
        .iter()
        .filter(|r| r.key == "alias")
        .filter_map(|r| {
            Some((
                name::alias(&r.value)?.into_bytes(),
                0,
                r.module.as_bytes().to_vec(),
            ))
        })
        .collect();

    let write = |entries: &[(Vec<u8>, u32, Vec<u8>)]| index::write(entries, false);
    out.files
        .insert("modules.dep".into(), dep_text.into_bytes());
    out.files.insert("modules.dep.bin".into(), write(&dep_bin)?);
    out.files
        .insert("modules.alias".into(), alias_text.into_bytes());
    out.files
        .insert("modules.alias.bin".into(), write(&alias_bin)?);
    out.files
        .insert("modules.softdep".into(), softdep_text.into_bytes());
    out.files.insert(
        "modules.symbols".into(),
        b"# Aliases for symbols, used by symbol_request().\n".to_vec(),
    );
    out.files.insert("modules.symbols.bin".into(), write(&[])?);
    out.files
        .insert("modules.builtin.bin".into(), write(&builtin_bin)?);
    out.files.insert(
        "modules.builtin.alias.bin".into(),
        write(&builtin_alias_bin)?,
    );
    out.modules = entries.len();
    out.warnings.sort();
    out.warnings.dedup();
    Ok(out)
}

/// The transitive dependencies of `entry` in load order (each after its own).
fn closure(
    entry: &Entry,
    entries: &[Entry],
    position: &HashMap<&str, usize>,
    warnings: &mut Vec<String>,
) -> Vec<usize> {
    let mut order = Vec::new();
    let mut state: HashMap<usize, bool> = HashMap::new(); // false: in progress, true: done
    fn visit(
        i: usize,
        entries: &[Entry],
        position: &HashMap<&str, usize>,
        state: &mut HashMap<usize, bool>,
        order: &mut Vec<usize>,
        warnings: &mut Vec<String>,
    ) {
        match state.get(&i) {
            Some(true) => return,
            Some(false) => {
                warnings.push(format!("dependency cycle through {}", entries[i].name));
                return;
            }
            None => {}
        }
        state.insert(i, false);
        for dep in entries[i].info.depends() {
            match position.get(dep.as_str()) {
                Some(&d) => visit(d, entries, position, state, order, warnings),
                None => warnings.push(format!(
                    "{} depends on {dep}, which is not in the tree",
                    entries[i].name
                )),
            }
        }
        state.insert(i, true);
        order.push(i);
    }
    let Some(&me) = position.get(entry.name.as_str()) else {
        return order;
    };
    visit(me, entries, position, &mut state, &mut order, warnings);
    order.pop(); // the module itself comes last
    order
}
