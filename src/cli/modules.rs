//! `initagent modules …` and the modprobe personality. `--root`/`--kernel` point every
//! subcommand at any tree, like modprobe's `-d`/`-S`, so they work on a build host too.

use super::Options;
use crate::config::cmdline::Cmdline;
use crate::config::Config;
use crate::kmod::load::{self, LoadOptions, Outcome};
use crate::kmod::resolve::{Action, BlacklistMode, Resolution};
use crate::kmod::{compress, elf::Modinfo, Modules};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Options of the module commands.
#[derive(Debug, Default)]
pub(crate) struct ModuleOptions {
    pub root: PathBuf,
    pub kernel: Option<String>,
    pub config_dirs: Vec<PathBuf>,
    pub list: Option<PathBuf>,
    pub show_depends: bool,
    pub lookup_only: bool,
    pub use_blacklist: bool,
    pub sequential: bool,
    /// `modules info -F FIELD`: only that field's values, like `modinfo -F`.
    pub field: Option<String>,
    /// `modules status --lsmod`: print like `lsmod`.
    pub lsmod: bool,
}

/// Opens the tree named by the options and reads modprobe.d and the kernel command line.
pub(crate) fn open(options: &ModuleOptions, cmdline_path: &Path) -> Result<Modules, String> {
    let root = if options.root.as_os_str().is_empty() {
        PathBuf::from("/")
    } else {
        options.root.clone()
    };
    let release = options
        .kernel
        .clone()
        .unwrap_or_else(crate::sys::kernel_release);
    let cmdline = Cmdline::parse_bytes(&std::fs::read(cmdline_path).unwrap_or_default());
    Modules::open(&root, &release, &options.config_dirs, &cmdline).map_err(|e| e.to_string())
}

fn fail(message: impl std::fmt::Display) -> i32 {
    errln!("initagent: {message}");
    1
}

/// `initagent modules SUBCOMMAND`.
pub(crate) fn run(options: &Options) -> i32 {
    crate::logging::init(log::LevelFilter::Warn);
    let (sub, args) = match options.positional.split_first() {
        Some((sub, args)) => (sub.as_str(), args),
        None => return fail("modules: say resolve, load, status or info"),
    };
    let context = match open(&options.modules, &options.paths.cmdline) {
        Ok(context) => context,
        Err(e) if sub == "load" => {
            return super::cannot_run("modules load", e, options.degraded_ok)
        }
        Err(e) => return fail(e),
    };
    for problem in &context.tree.problems {
        log::warn!("{problem}");
    }
    match sub {
        "resolve" if !args.is_empty() => resolve(&context, args, options),
        "resolve" => fail("modules resolve: name at least one module or alias"),
        "load" => load_command(&context, args, options),
        "status" if options.modules.lsmod => lsmod(),
        "status" => status(&context, options.json),
        "info" if args.len() == 1 => info(
            &context,
            &args[0],
            options.json,
            options.modules.field.as_deref(),
        ),
        "info" => fail("modules info: name one module or file"),
        other => fail(format!(
            "modules: unknown subcommand {other:?} (resolve, load, status, info)"
        )),
    }
}

/// How to load: `sequential` never together, `workers` if given, and done by the
/// configuration's modules deadline (a load still running then is reported as such).
fn load_options(
    config: &Config,
    sequential: HashSet<String>,
    workers: Option<usize>,
) -> LoadOptions {
    let mut options = LoadOptions {
        sequential,
        deadline: Some(config.modules_deadline()),
        ..LoadOptions::default()
    };
    if let Some(workers) = workers {
        options.workers = workers;
    }
    options
}

fn blacklist_mode(options: &ModuleOptions) -> BlacklistMode {
    if options.use_blacklist {
        BlacklistMode::Always
    } else {
        BlacklistMode::AliasOnly
    }
}

fn resolve(context: &Modules, inputs: &[String], options: &Options) -> i32 {
    let resolver = context.resolver();
    let resolutions: Vec<Resolution> = inputs
        .iter()
        .map(|i| resolver.resolve(i, blacklist_mode(&options.modules)))
        .collect();
    let missing = resolutions.iter().filter(|r| r.probes.is_empty()).count();
    if options.json {
        super::print_json(&resolutions);
    } else if options.modules.show_depends {
        for line in resolutions.iter().flat_map(Resolution::show_depends) {
            outln!("{line}");
        }
    } else if options.modules.lookup_only {
        for name in resolutions.iter().flat_map(Resolution::names) {
            outln!("{name}");
        }
    } else {
        for resolution in &resolutions {
            print_resolution(resolution, &context.tree.dir);
        }
    }
    for resolution in resolutions.iter().filter(|r| r.probes.is_empty()) {
        errln!(
            "initagent: {}: no module, alias or built-in of that name in {}",
            resolution.input,
            context.tree.dir.display()
        );
    }
    i32::from(missing > 0)
}

fn print_resolution(resolution: &Resolution, dir: &Path) {
    let source = resolution.source.map_or("not found", |s| s.describe());
    outln!("{}: {source}", resolution.input);
    for probe in &resolution.probes {
        if probe.blacklisted {
            outln!("  {}: blacklisted, not loaded", probe.module.name);
            continue;
        }
        for step in &probe.steps {
            let what = match &step.action {
                Action::Insert { path } => {
                    path.strip_prefix(dir).unwrap_or(path).display().to_string()
                }
                Action::Builtin => "built in".into(),
                Action::Install { command } => format!("install command: {command}"),
                Action::Missing => "MISSING from modules.dep".into(),
                Action::Refused { why } => format!("REFUSED: {why}"),
            };
            let options = if step.options.is_empty() {
                String::new()
            } else {
                format!(" options: {}", step.options.trim())
            };
            outln!(
                "  {:<24} {what}  ({}){options}",
                step.module.name,
                step.reason
            );
        }
    }
}

fn load_command(context: &Modules, args: &[String], options: &Options) -> i32 {
    let inputs = if args.is_empty() {
        let list = options
            .modules
            .list
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::kmod::DEFAULT_LIST));
        match crate::kmod::read_list(&list) {
            Ok(inputs) => inputs,
            Err(e) => {
                return super::cannot_run(
                    "modules load",
                    format!("{e} (name modules, or pass --list FILE)"),
                    options.degraded_ok,
                )
            }
        }
    } else {
        args.to_vec()
    };
    // The same ordering rules as the boot's steps: the configuration's sequential set,
    // one worker when it (or --sequential) says so.
    let config = super::effective_config(options);
    let workers = (options.modules.sequential || !config.modules_parallel).then_some(1);
    let sequential = config.modules_sequential.iter().cloned().collect();
    let (plan, report) = context.load(
        &inputs,
        &load_options(&config, sequential, workers),
        blacklist_mode(&options.modules),
    );
    if options.json {
        super::print_json(&report);
    } else {
        for (name, outcome) in &report.modules {
            outln!("{}", crate::kmod::describe_outcome(name, outcome));
        }
        for (input, why) in &report.unresolved {
            outln!("{input}: NOT FOUND: {why}");
        }
        let counters: Vec<String> = report
            .counters()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        outln!("{} in {} ms", counters.join(" "), report.micros / 1000);
    }
    let failed = !report.required_failures(&plan).is_empty();
    if failed && options.degraded_ok {
        errln!("initagent: some modules failed; going on (--degraded-ok)");
    }
    i32::from(failed && !options.degraded_ok)
}

fn status(context: &Modules, json: bool) -> i32 {
    let loaded: Vec<String> = std::fs::read_to_string("/proc/modules")
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let builtin = std::fs::read_to_string(context.tree.dir.join("modules.builtin"))
        .map(|t| crate::kmod::text::parse_paths(&t).len())
        .unwrap_or(0);
    let outcomes: Option<load::Report> = std::fs::read(crate::kmod::OUTCOMES_PATH)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let failed: Vec<String> = outcomes
        .iter()
        .flat_map(|r| r.modules.iter())
        .filter(|(_, o)| {
            matches!(
                o,
                Outcome::Failed { .. } | Outcome::StillLoading { .. } | Outcome::Skipped { .. }
            )
        })
        .map(|(n, o)| crate::kmod::describe_outcome(n, o))
        .chain(
            outcomes
                .iter()
                .flat_map(|r| r.unresolved.iter())
                .map(|(n, why)| format!("{n}: NOT FOUND: {why}")),
        )
        .collect();
    if json {
        let value = serde_json::json!({
            "tree": context.tree.dir, "loaded": loaded, "builtin_count": builtin,
            "failed": failed, "index_problems": context.tree.problems,
        });
        super::print_json(&value);
    } else {
        outln!("tree: {}", context.tree.dir.display());
        outln!("loaded ({}): {}", loaded.len(), loaded.join(" "));
        outln!("built in: {builtin} (modules.builtin)");
        match &outcomes {
            None => outln!(
                "failed this boot: unknown (no {})",
                crate::kmod::OUTCOMES_PATH
            ),
            Some(_) if failed.is_empty() => outln!("failed this boot: none"),
            Some(_) => {
                outln!("failed this boot ({}):", failed.len());
                for line in &failed {
                    outln!("  {line}");
                }
            }
        }
        for problem in &context.tree.problems {
            outln!("index problem: {problem}");
        }
    }
    0
}

/// `lsmod`'s table from `/proc/modules`: name, size, use count and users, in the kernel's
/// order (kmod's layout: `%-19s %8lu  %d` and the users after a space, comma-separated).
fn lsmod() -> i32 {
    match std::fs::read_to_string("/proc/modules") {
        Ok(text) => {
            out!("{}", lsmod_table(&text));
            0
        }
        Err(e) => fail(format!("/proc/modules: {e}")),
    }
}

/// The text of [`lsmod`] for the text of `/proc/modules`.
pub(crate) fn lsmod_table(proc_modules: &str) -> String {
    let mut table = String::from("Module                  Size  Used by\n");
    for line in proc_modules.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, size, used, users, ..] = fields[..] else {
            continue;
        };
        table.push_str(&format!("{name:<19} {size:>8}  {used}"));
        let users = users.trim_end_matches(',');
        if !users.is_empty() && users != "-" {
            table.push(' ');
            table.push_str(users);
        }
        table.push('\n');
    }
    table
}

fn info(context: &Modules, target: &str, json: bool, field: Option<&str>) -> i32 {
    let path = if Path::new(target).is_file() {
        PathBuf::from(target)
    } else {
        let name = crate::kmod::name::modname(target);
        match context.tree.dep_line(&name) {
            Some(line) => match context.tree.module_path(&line.path) {
                Ok(path) => path,
                Err(why) => return fail(why),
            },
            None if context.tree.is_builtin(&name) => {
                outln!("{name}: built into the kernel");
                return 0;
            }
            None => {
                return fail(format!(
                    "{target}: not a file and not a module in {}",
                    context.tree.dir.display()
                ))
            }
        }
    };
    let data = match std::fs::read(&path) {
        Ok(data) => data,
        Err(e) => return fail(format!("{}: {e}", path.display())),
    };
    let format = compress::Compression::detect(&data);
    let modinfo = match compress::decompress(&data)
        .map_err(|e| e.to_string())
        .and_then(|plain| Modinfo::from_elf(&plain).map_err(|e| e.to_string()))
    {
        Ok(modinfo) => modinfo,
        Err(e) => return fail(format!("{}: {e}", path.display())),
    };
    if let Some(field) = field {
        // modinfo -F: the field's values, one a line; `filename` is the file.
        if field == "filename" {
            outln!("{}", path.display());
        }
        if field == "parm" {
            for line in parm_lines(&modinfo.fields) {
                outln!("{line}");
            }
            return 0;
        }
        for (_, value) in modinfo.fields.iter().filter(|(k, _)| k == field) {
            outln!("{value}");
        }
        return 0;
    }
    if json {
        let fields: Vec<_> = modinfo
            .fields
            .iter()
            .map(|(k, v)| serde_json::json!([k, v]))
            .collect();
        let value = serde_json::json!({"filename": path, "compression": format.kernel_name(), "size": data.len(), "fields": fields});
        super::print_json(&value);
    } else {
        outln!("{:<12} {}", "filename:", path.display());
        outln!(
            "{:<12} {} ({} bytes)",
            "compression:",
            format.kernel_name(),
            data.len()
        );
        for (key, value) in &modinfo.fields {
            outln!("{:<12} {value}", format!("{key}:"));
        }
    }
    0
}

/// `modinfo -F parm`: each parameter's description and type joined (`name:desc (type)`),
/// the parameters in the reverse order of their first appearance, as modinfo lists them.
pub(crate) fn parm_lines(fields: &[(String, String)]) -> Vec<String> {
    let mut params: Vec<(&str, Option<&str>, Option<&str>)> = Vec::new();
    for (key, value) in fields {
        if key != "parm" && key != "parmtype" {
            continue;
        }
        let Some((name, text)) = value.split_once(':') else {
            continue;
        };
        let at = match params.iter().position(|(n, _, _)| *n == name) {
            Some(at) => at,
            None => {
                params.push((name, None, None));
                params.len() - 1
            }
        };
        if key == "parm" {
            params[at].1 = Some(text);
        } else {
            params[at].2 = Some(text);
        }
    }
    params
        .iter()
        .rev()
        .map(|(name, desc, kind)| match (desc, kind) {
            (None, Some(kind)) => format!("{name}: ({kind})"),
            (Some(desc), Some(kind)) => format!("{name}:{desc} ({kind})"),
            (Some(desc), None) => format!("{name}:{desc}"),
            (None, None) => format!("{name}:"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_join_description_and_type_in_modinfos_order() {
        let fields: Vec<(String, String)> = [
            ("parm", "debug:Debug level"),
            ("parmtype", "debug:int"),
            ("parmtype", "quiet:bool"),
            ("license", "GPL"),
            ("parm", "speed:Speed"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            parm_lines(&fields),
            vec!["speed:Speed", "quiet: (bool)", "debug:Debug level (int)"]
        );
    }

    #[test]
    fn proc_modules_becomes_lsmods_table() {
        let proc_modules = "bridge 311296 1 br_netfilter, Live 0x0000000000000000\n\
                            stp 16384 1 bridge, Live 0x0000000000000000\n\
                            a_module_with_a_very_long_name 4096 0 - Live 0x0\n\
                            llc 16384 2 bridge,stp, Live 0x0000000000000000\n";
        assert_eq!(
            lsmod_table(proc_modules),
            "Module                  Size  Used by\n\
             bridge                311296  1 br_netfilter\n\
             stp                    16384  1 bridge\n\
             a_module_with_a_very_long_name     4096  0\n\
             llc                    16384  2 bridge,stp\n"
        );
    }
}
