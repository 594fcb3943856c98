//! What `modprobe NAME|ALIAS` would do, without loading anything: kmod's lookup order
//! (config aliases, module names, `symbol:`, install commands, the alias index, built-in
//! aliases, built-in names), then for every match the probe list (hard dependencies in
//! load order, each wrapped in its soft dependencies, then the module wrapped in its
//! own), with options, install commands and blacklisting as `modprobe` applies them.
//! Pure over a [`ModuleTree`] and a [`ModprobeConfig`].

use super::config::ModprobeConfig;
use super::name;
use super::tree::{IndexFile, ModuleTree};
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;

/// A module as a lookup found it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Module {
    /// Normalised module name.
    pub name: String,
    /// The (normalised) alias it was found by, if any.
    pub alias: Option<String>,
    /// Found in a built-in index.
    pub builtin: bool,
    /// Found through an `install` command of that exact name.
    pub install: Option<String>,
}

impl Module {
    /// A module by its (normalised) name.
    pub fn named(name: String) -> Module {
        Module {
            name,
            alias: None,
            builtin: false,
            install: None,
        }
    }

    fn via_alias(name: String, alias: &str) -> Module {
        Module {
            name,
            alias: Some(alias.to_string()),
            builtin: false,
            install: None,
        }
    }
}

/// Which lookup source answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An `alias` line in modprobe.d.
    ConfigAlias,
    /// `modules.dep.bin`: the input is a module name.
    ModuleName,
    /// `modules.symbols.bin`.
    Symbol,
    /// An `install` (or `remove`) command named exactly so.
    Command,
    /// `modules.alias.bin`.
    Alias,
    /// `modules.builtin.alias.bin`.
    BuiltinAlias,
    /// `modules.builtin.bin`.
    BuiltinName,
}

impl Source {
    /// Short description for `modules resolve`.
    pub fn describe(self) -> &'static str {
        match self {
            Source::ConfigAlias => "alias in modprobe.d",
            Source::ModuleName => "module name (modules.dep)",
            Source::Symbol => "exported symbol (modules.symbols)",
            Source::Command => "install command in modprobe.d",
            Source::Alias => "module alias (modules.alias)",
            Source::BuiltinAlias => "alias of a built-in module",
            Source::BuiltinName => "built-in module",
        }
    }
}

/// Whether a blacklist entry stops a top-level module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlacklistMode {
    /// Only when it was reached through an alias (plain `modprobe`).
    AliasOnly,
    /// Always (`modprobe -b`, udev's coldplug).
    Always,
}

/// What to do for one module of a probe list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Action {
    /// Load the file with these options.
    Insert {
        /// Absolute path of the `.ko*`.
        path: PathBuf,
    },
    /// Built into the kernel: nothing to do.
    Builtin,
    /// Run this `install` command instead of loading.
    Install {
        /// The shell command.
        command: String,
    },
    /// Neither in the dependency map nor built in (a config alias to a missing module).
    Missing,
    /// In the dependency map under a path that is refused (out of the tree).
    Refused {
        /// Why.
        why: String,
    },
}

/// One entry of a probe list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The module.
    pub module: Module,
    /// What to do.
    pub action: Action,
    /// Options for the kernel (config, then command line).
    pub options: String,
    /// The requested module or one of its hard dependencies (a soft dependency's failure
    /// is not an error).
    pub required: bool,
    /// Why it is in the list ("requested", "dependency of ext4", "pre-softdep of jbd2").
    pub reason: String,
    /// Modules that must be loaded before this one: its hard dependencies, its
    /// pre-softdeps, and the module it is a post-softdep of.
    pub after: Vec<String>,
}

/// The probe of one lookup match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// The match.
    pub module: Module,
    /// Skipped: blacklisted.
    pub blacklisted: bool,
    /// Steps in load order (may repeat a module, as kmod's list does).
    pub steps: Vec<Step>,
}

/// The answer to "what would `modprobe INPUT` do".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// The input as given.
    pub input: String,
    /// Which source answered (`None`: nothing matched).
    pub source: Option<Source>,
    /// One probe per match, in priority order.
    pub probes: Vec<Probe>,
}

/// Resolves names and aliases against a tree and a configuration.
pub struct Resolver<'a> {
    tree: &'a ModuleTree,
    config: &'a ModprobeConfig,
}

impl<'a> Resolver<'a> {
    /// A resolver over `tree` and `config`.
    pub fn new(tree: &'a ModuleTree, config: &'a ModprobeConfig) -> Self {
        Resolver { tree, config }
    }

    /// kmod's `kmod_module_new_from_lookup`: the first source that finds anything wins.
    /// `None` when the input is not a valid alias (unbalanced brackets).
    pub fn lookup(&self, input: &str) -> Option<(Option<Source>, Vec<Module>)> {
        let alias = name::alias(input)?;
        let found: Vec<Module> = self
            .config
            .aliases
            .iter()
            .filter(|(pattern, _)| super::fnmatch::fnmatch(pattern.as_bytes(), alias.as_bytes()))
            .map(|(pattern, module)| Module::via_alias(module.clone(), pattern))
            .fold(Vec::new(), |mut list, module| {
                if !list.contains(&module) {
                    list.push(module);
                }
                list
            });
        if !found.is_empty() {
            return Some((Some(Source::ConfigAlias), found));
        }
        if !alias.contains(':') && self.tree.dep_line(&alias).is_some() {
            return Some((Some(Source::ModuleName), vec![Module::named(alias)]));
        }
        if alias.starts_with("symbol:") {
            let found = self.search_index(IndexFile::Symbols, &alias, false);
            if !found.is_empty() {
                return Some((Some(Source::Symbol), found));
            }
        }
        let command = (self.config.installs.iter())
            .chain(self.config.removes.iter())
            .find(|(module, _)| *module == alias);
        if let Some((module, command)) = command {
            let mut found = Module::named(module.clone());
            if self.config.installs.iter().any(|(m, _)| *m == alias) {
                found.install = Some(command.clone());
            }
            return Some((Some(Source::Command), vec![found]));
        }
        let found = self.search_index(IndexFile::Alias, &alias, false);
        if !found.is_empty() {
            return Some((Some(Source::Alias), found));
        }
        let found = self.search_index(IndexFile::BuiltinAlias, &alias, true);
        if !found.is_empty() {
            return Some((Some(Source::BuiltinAlias), found));
        }
        if self.tree.is_builtin(&alias) {
            let mut module = Module::named(alias);
            module.builtin = true;
            return Some((Some(Source::BuiltinName), vec![module]));
        }
        Some((None, Vec::new()))
    }

    fn search_index(&self, which: IndexFile, alias: &str, builtin: bool) -> Vec<Module> {
        self.tree
            .search(which, alias)
            .into_iter()
            .map(|name| {
                let mut module = Module::via_alias(name, alias);
                module.builtin = builtin;
                module
            })
            .collect()
    }

    /// Everything `modprobe INPUT` would do.
    pub fn resolve(&self, input: &str, blacklist: BlacklistMode) -> Resolution {
        let (source, modules) = self.lookup(input).unwrap_or((None, Vec::new()));
        let probes = modules
            .into_iter()
            .map(|m| self.probe(m, blacklist))
            .collect();
        Resolution {
            input: input.to_string(),
            source,
            probes,
        }
    }

    /// [`Resolver::resolve`] with modprobe's `-i`: the requested modules' own `install`
    /// commands and soft dependencies are ignored (their dependencies' are not), as
    /// kmod's `KMOD_PROBE_IGNORE_COMMAND` does.
    pub fn resolve_ignoring_commands(&self, input: &str, blacklist: BlacklistMode) -> Resolution {
        let (source, modules) = self.lookup(input).unwrap_or((None, Vec::new()));
        let probes = modules
            .into_iter()
            .map(|m| self.probe_with(m, blacklist, true))
            .collect();
        Resolution {
            input: input.to_string(),
            source,
            probes,
        }
    }

    /// What `modprobe /path/to/x.ko` would do (kmod 31 and later): the module named by
    /// the file, its dependencies and soft dependencies from the tree by that name, and the
    /// file itself loaded in its place. Nothing when the file does not exist.
    pub fn resolve_path(&self, path: &std::path::Path, blacklist: BlacklistMode) -> Resolution {
        let input = path.display().to_string();
        if !path.is_file() {
            return Resolution {
                input,
                source: None,
                probes: Vec::new(),
            };
        }
        let module = Module::named(name::modname_from_path(&input));
        let mut probe = self.probe_with(module, blacklist, false);
        for step in &mut probe.steps {
            if step.module.name == probe.module.name
                && step.reason == "requested"
                && !matches!(step.action, Action::Install { .. })
            {
                step.action = Action::Insert {
                    path: path.to_path_buf(),
                };
            }
        }
        Resolution {
            input,
            source: Some(Source::ModuleName),
            probes: vec![probe],
        }
    }

    /// The probe list of one module (kmod's `kmod_module_get_probe_list`).
    pub fn probe(&self, module: Module, blacklist: BlacklistMode) -> Probe {
        self.probe_with(module, blacklist, false)
    }

    fn probe_with(&self, module: Module, blacklist: BlacklistMode, ignore_commands: bool) -> Probe {
        let gated = blacklist == BlacklistMode::Always || module.alias.is_some();
        if gated && self.config.is_blacklisted(&module.name) {
            return Probe {
                module,
                blacklisted: true,
                steps: Vec::new(),
            };
        }
        let mut builder = ProbeBuilder {
            resolver: self,
            visited: HashSet::new(),
            steps: Vec::new(),
            required: HashSet::new(),
        };
        builder.required.insert(module.name.clone());
        for dep in self.dependencies(&module) {
            builder.required.insert(dep.name.clone());
        }
        if ignore_commands {
            builder.probe_list_ignoring_commands(&module);
        } else {
            builder.probe_list(&module, "requested");
        }
        Probe {
            module,
            blacklisted: false,
            steps: builder.steps,
        }
    }

    /// Hard dependencies of `module` in load order (the reverse of its `modules.dep` line).
    fn dependencies(&self, module: &Module) -> Vec<Module> {
        if module.builtin {
            return Vec::new();
        }
        self.tree
            .dep_line(&module.name)
            .map(|line| {
                line.deps
                    .iter()
                    .rev()
                    .map(|d| Module::named(name::modname_from_path(d)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn action(&self, module: &Module, ignore_install: bool) -> Action {
        let install = module
            .install
            .clone()
            .or_else(|| self.config.install_for(&module.name).map(str::to_string));
        match install {
            Some(command) if !ignore_install => Action::Install { command },
            _ => {
                if module.builtin {
                    return Action::Builtin;
                }
                match self.tree.dep_line(&module.name) {
                    Some(line) => match self.tree.module_path(&line.path) {
                        Ok(path) => Action::Insert { path },
                        Err(why) => Action::Refused { why },
                    },
                    None if self.tree.is_builtin(&module.name) => Action::Builtin,
                    None => Action::Missing,
                }
            }
        }
    }

    /// The names on `name`'s `modules.dep` line, in the line's order (kmod's
    /// `kmod_module_get_dependencies`).
    pub fn dependency_names(&self, name: &str) -> Vec<String> {
        self.tree
            .dep_line(name)
            .map(|line| {
                line.deps
                    .iter()
                    .map(|d| name::modname_from_path(d))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Soft dependencies of `name` (first matching rule), each resolved by lookup.
    pub fn softdeps(&self, name: &str) -> (Vec<Module>, Vec<Module>) {
        let Some(rule) = self.config.softdep_for(name) else {
            return (Vec::new(), Vec::new());
        };
        let resolve = |names: &[String]| -> Vec<Module> {
            names
                .iter()
                .flat_map(|n| self.lookup(n).map(|(_, found)| found).unwrap_or_default())
                .collect()
        };
        (resolve(&rule.pre), resolve(&rule.post))
    }
}

struct ProbeBuilder<'r, 'a> {
    resolver: &'r Resolver<'a>,
    /// kmod marks module objects, which are keyed by name and alias.
    visited: HashSet<(String, Option<String>)>,
    steps: Vec<Step>,
    required: HashSet<String>,
}

impl ProbeBuilder<'_, '_> {
    /// `__kmod_module_get_probe_list`.
    fn probe_list(&mut self, module: &Module, reason: &str) {
        if !self
            .visited
            .insert((module.name.clone(), module.alias.clone()))
        {
            return;
        }
        let dependency_reason = format!("dependency of {}", module.name);
        for dep in self.resolver.dependencies(module) {
            self.fill_softdep(&dep, &dependency_reason);
        }
        self.fill_softdep(module, reason);
    }

    /// `__kmod_module_get_probe_list` with `ignorecmd`: the dependencies as usual, then the
    /// module itself, without its soft dependencies or `install` command.
    fn probe_list_ignoring_commands(&mut self, module: &Module) {
        self.visited
            .insert((module.name.clone(), module.alias.clone()));
        let dependency_reason = format!("dependency of {}", module.name);
        let dependencies = self.resolver.dependencies(module);
        for dep in &dependencies {
            self.fill_softdep(dep, &dependency_reason);
        }
        self.steps.push(Step {
            module: module.clone(),
            options: self
                .resolver
                .config
                .options_for(&module.name, module.alias.as_deref()),
            action: self.resolver.action(module, true),
            required: true,
            reason: "requested".into(),
            after: dependencies.into_iter().map(|d| d.name).collect(),
        });
    }

    /// `__kmod_module_fill_softdep`: pre-softdeps, the module, post-softdeps.
    fn fill_softdep(&mut self, module: &Module, reason: &str) {
        let (pre, post) = self.resolver.softdeps(&module.name);
        let pre_reason = format!("pre-softdep of {}", module.name);
        for soft in &pre {
            self.probe_list(soft, &pre_reason);
        }
        let has_softdeps = !pre.is_empty() || !post.is_empty();
        let action = self.resolver.action(module, has_softdeps);
        let mut after: Vec<String> = self
            .resolver
            .dependencies(module)
            .into_iter()
            .map(|d| d.name)
            .collect();
        after.extend(pre.iter().map(|m| m.name.clone()));
        self.steps.push(Step {
            module: module.clone(),
            options: self
                .resolver
                .config
                .options_for(&module.name, module.alias.as_deref()),
            action,
            required: self.required.contains(&module.name),
            reason: reason.to_string(),
            after,
        });
        let post_reason = format!("post-softdep of {}", module.name);
        for soft in &post {
            let first_new = self.steps.len();
            self.probe_list(soft, &post_reason);
            for step in &mut self.steps[first_new..] {
                if step.module.name == soft.name {
                    step.after.push(module.name.clone());
                }
            }
        }
    }
}

impl Resolution {
    /// The lines `modprobe --show-depends INPUT` prints.
    pub fn show_depends(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for probe in &self.probes {
            for step in &probe.steps {
                // kmod's module_options_concat leaves a space after non-empty options.
                let options = if step.options.is_empty() {
                    String::new()
                } else {
                    format!("{} ", step.options)
                };
                match &step.action {
                    Action::Insert { path } => {
                        lines.push(format!("insmod {} {options}", path.display()))
                    }
                    Action::Builtin => lines.push(format!("builtin {}", step.module.name)),
                    Action::Install { command } => {
                        lines.push(format!("install {command} {options}"))
                    }
                    Action::Missing | Action::Refused { .. } => {}
                }
            }
        }
        lines
    }

    /// Module names, as `modprobe -R INPUT` prints them (duplicates kept).
    pub fn names(&self) -> Vec<String> {
        self.probes.iter().map(|p| p.module.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmod::index::tests::build;
    use crate::kmod::tree::ModuleTree;

    /// ext4 → jbd2, mbcache, crc16; jbd2 and ext4 softdep on crypto-crc32c (two matches);
    /// e1000 has a PCI alias; aes_generic is built in.
    fn tree() -> ModuleTree {
        let dep = build(&[
            ("ext4", 0, "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko"),
            ("jbd2", 1, "kernel/fs/jbd2/jbd2.ko:"),
            ("mbcache", 2, "kernel/fs/mbcache.ko:"),
            ("crc16", 3, "kernel/lib/crc16.ko:"),
            ("crc32c_intel", 4, "kernel/arch/x86/crypto/crc32c-intel.ko:"),
            ("crc32c_generic", 5, "kernel/crypto/crc32c_generic.ko:"),
            ("e1000", 6, "kernel/drivers/net/e1000.ko:"),
        ]);
        let alias = build(&[
            ("crypto_crc32c", 4, "crc32c_intel"),
            ("crypto_crc32c", 5, "crc32c_generic"),
            ("pci:v00008086d0000100Esv*sd*bc*sc*i*", 6, "e1000"),
        ]);
        let builtin = build(&[("aes_generic", 0, "")]);
        let builtin_alias = build(&[("aes", 0, "aes_generic")]);
        ModuleTree::from_indexes(
            PathBuf::from("/m"),
            "test",
            [
                Some(dep),
                Some(alias),
                None,
                Some(builtin),
                Some(builtin_alias),
            ],
        )
    }

    fn config(text: &str) -> ModprobeConfig {
        let mut config = ModprobeConfig::default();
        config.parse(
            "softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c\n",
            "modules.softdep",
        );
        config.parse(text, "test.conf");
        config
    }

    fn names(resolution: &Resolution) -> Vec<String> {
        resolution
            .probes
            .iter()
            .flat_map(|p| p.steps.iter().map(|s| s.module.name.clone()))
            .collect()
    }

    #[test]
    fn hard_and_soft_dependencies_in_kmod_order() {
        let (tree, config) = (tree(), config(""));
        let resolution = Resolver::new(&tree, &config).resolve("ext4", BlacklistMode::AliasOnly);
        assert_eq!(resolution.source, Some(Source::ModuleName));
        assert_eq!(
            names(&resolution),
            [
                "crc32c_intel",
                "crc32c_generic",
                "jbd2",
                "mbcache",
                "crc16",
                "ext4"
            ]
        );
        let ext4 = resolution.probes[0].steps.last().unwrap();
        assert_eq!(
            ext4.after,
            ["jbd2", "mbcache", "crc16", "crc32c_intel", "crc32c_generic"]
        );
        assert!(ext4.required && !resolution.probes[0].steps[0].required);
        assert_eq!(
            resolution.show_depends()[5],
            "insmod /m/kernel/fs/ext4/ext4.ko "
        );
    }

    #[test]
    fn aliases_blacklists_options_and_builtins() {
        let (tree, config) = (
            tree(),
            config("blacklist e1000\noptions e1000 debug=1\nalias my-nic e1000\n"),
        );
        let resolver = Resolver::new(&tree, &config);
        let pci = "pci:v00008086d0000100Esv00008086sd00001000bc02sc00i00";
        assert!(resolver.resolve(pci, BlacklistMode::AliasOnly).probes[0].blacklisted);
        let by_name = resolver.resolve("e1000", BlacklistMode::AliasOnly);
        assert_eq!(
            by_name.show_depends(),
            ["insmod /m/kernel/drivers/net/e1000.ko debug=1 "]
        );
        assert!(resolver.resolve("e1000", BlacklistMode::Always).probes[0].blacklisted);
        assert_eq!(
            resolver.resolve("my-nic", BlacklistMode::AliasOnly).source,
            Some(Source::ConfigAlias)
        );
        let aes = resolver.resolve("aes", BlacklistMode::AliasOnly);
        assert_eq!(aes.source, Some(Source::BuiltinAlias));
        assert_eq!(aes.show_depends(), ["builtin aes_generic"]);
        assert_eq!(
            resolver.resolve("nothing", BlacklistMode::AliasOnly).source,
            None
        );
        assert!(resolver.lookup("bad[").is_none());
    }

    #[test]
    fn install_commands_unless_softdeps() {
        let (tree, config) = (
            tree(),
            config("install crc16 /bin/true\ninstall ext4 /bin/false\n"),
        );
        let resolution = Resolver::new(&tree, &config).resolve("ext4", BlacklistMode::AliasOnly);
        let lines = resolution.show_depends();
        assert!(
            lines.contains(&"install /bin/true ".to_string()),
            "{lines:?}"
        );
        // ext4 has softdeps, so its install command is ignored, as kmod does.
        assert_eq!(lines.last().unwrap(), "insmod /m/kernel/fs/ext4/ext4.ko ");
    }
}
