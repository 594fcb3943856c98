//! `initagent flist mount|umount|inspect|ls|cat|verify|pack|prefetch|route`.

use super::Options;
use crate::flist::fs::{FlistFs, Kind};
use crate::flist::mount::{self, MountState, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Options of the flist commands.
#[derive(Debug, Default, Clone)]
pub(crate) struct FlistOptions {
    pub meta: Option<PathBuf>,
    pub cache: Option<PathBuf>,
    pub cache_bytes: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub stores: Vec<String>,
    pub rewrites: Vec<String>,
    pub foreground: bool,
    pub lazy: bool,
    pub store_timeout: Option<u64>,
    pub ca_file: Option<PathBuf>,
    pub keep_passwords: bool,
    pub fs_subtype: Option<String>,
    pub no_allow_other: bool,
    pub stats: Option<PathBuf>,
    /// More stores and rewrites as JSON on stdin (how a daemon gets them: never in argv).
    pub stores_stdin: bool,
}

fn fail(message: impl std::fmt::Display) -> i32 {
    errln!("initagent: {message}");
    1
}

fn open_options(options: &FlistOptions) -> Result<OpenOptions, String> {
    let mut open = OpenOptions::new();
    open.stores = options.stores.clone();
    open.cache_dir = options.cache.clone();
    if let Some(bytes) = options.cache_bytes {
        open.cache_bytes = bytes;
    }
    if let Some(bytes) = options.memory_bytes {
        open.memory_bytes = bytes;
    }
    open.store_timeout = options.store_timeout.map(Duration::from_secs);
    open.ca_file = options.ca_file.clone();
    for rewrite in &options.rewrites {
        let (from, to) = rewrite.split_once('=').ok_or_else(|| {
            format!("--store-rewrite {rewrite:?}: expected FROM=TO (URL prefixes)")
        })?;
        open.rewrites.push((from.to_string(), to.to_string()));
    }
    Ok(open)
}

fn fuse_options(options: &FlistOptions) -> Result<mount::FuseOptions, String> {
    let mut fuse = match &options.fs_subtype {
        Some(subtype) => mount::FuseOptions::with_subtype(subtype)?,
        None => mount::FuseOptions::default(),
    };
    fuse.allow_other = !options.no_allow_other;
    Ok(fuse)
}

fn meta_path(options: &FlistOptions) -> Result<PathBuf, String> {
    let meta = options
        .meta
        .clone()
        .ok_or("name the flist with -m FILE.fl")?;
    meta.canonicalize()
        .map_err(|e| format!("{}: {e}", meta.display()))
}

fn open_fs(options: &FlistOptions) -> Result<Arc<FlistFs>, String> {
    mount::open(&meta_path(options)?, &open_options(options)?)
}

/// `initagent flist SUBCOMMAND`.
pub(crate) fn run(options: &Options) -> i32 {
    crate::logging::init(log::LevelFilter::Warn);
    let (sub, args) = match options.positional.split_first() {
        Some((sub, args)) => (sub.as_str(), args),
        None => {
            return fail(
                "flist: say mount, umount, inspect, ls, cat, verify, pack, prefetch or route",
            )
        }
    };
    let result = match sub {
        "mount" => mount_command(&options.flist, args),
        "umount" | "unmount" => umount(&options.flist, args),
        "inspect" => inspect(&options.flist, options.json),
        "ls" => ls(
            &options.flist,
            args.first().map(String::as_str).unwrap_or("/"),
            options.json,
        ),
        "cat" => match args.first() {
            Some(path) => cat(&options.flist, path),
            None => Err("flist cat: name a path inside the flist".into()),
        },
        "verify" => verify(&options.flist, options.json),
        "pack" => pack(&options.flist, args, options.json),
        "prefetch" => prefetch(&options.flist, args, options.json),
        "route" => route(&options.flist, args, options.json),
        other => Err(format!(
            "flist: unknown subcommand {other:?} (mount, umount, inspect, ls, cat, verify, pack, prefetch, route)"
        )),
    };
    match result {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

fn mount_command(options: &FlistOptions, args: &[String]) -> Result<i32, String> {
    let target = PathBuf::from(
        args.first()
            .ok_or("flist mount: name the target directory")?,
    );
    let meta = meta_path(options)?;
    let source = meta.display().to_string();
    let fuse = fuse_options(options)?;
    if mount::claim(&target, &source, &fuse.subtype)? {
        outln!("{} already serves {source}", target.display());
        return Ok(0);
    }
    if !target.is_dir() {
        return Err(format!("{}: not a directory", target.display()));
    }
    // With --stores-stdin the manifest is read while the stores are still to come: stage
    // 1 starts this daemon beside its probe of the store and closes stdin once the probe
    // passed (daemon::Starting). Held until `open_fs` below shares it; its errors are
    // `open_fs`'s to report.
    let _read = options
        .stores_stdin
        .then(|| crate::flist::meta::Manifest::open_shared(&meta).ok());
    let mut options = options.clone();
    if options.stores_stdin {
        let secrets = crate::flist::daemon::StoreSecrets::read(std::io::stdin().lock())?;
        options.stores.extend(secrets.stores);
        options.rewrites.extend(secrets.rewrites);
    }
    let options = &options;
    // Open first: a bad flist or store URL is reported here, not by a daemon.
    let fs = open_fs(options)?;
    if options.foreground {
        crate::flist::daemon::lower_oom_score();
        if crate::logging::attach_kmsg(false).is_err() {
            log::debug!("no /dev/kmsg; logging to stderr");
        }
        if let Some(stats) = &options.stats {
            crate::flist::daemon::keep_stats(fs.clone(), &source, &target, stats.clone());
        }
        mount::serve(fs, &source, &target, 4, &fuse)?;
        return Ok(0);
    }
    drop(fs);
    let request = crate::flist::daemon::DaemonRequest {
        manifest: meta,
        target: target.clone(),
        cache: options.cache.clone(),
        cache_bytes: options.cache_bytes,
        memory_bytes: options.memory_bytes,
        stores: options.stores.clone(),
        rewrites: options.rewrites.clone(),
        store_timeout: options.store_timeout,
        ca_file: options.ca_file.clone(),
        subtype: fuse.subtype.clone(),
        allow_other: fuse.allow_other,
        stats: options.stats.clone(),
    };
    let pid = crate::flist::daemon::start(&request, Duration::from_secs(10))?;
    outln!("{} serves {source} (daemon pid {pid})", target.display());
    Ok(0)
}

fn umount(options: &FlistOptions, args: &[String]) -> Result<i32, String> {
    let target = PathBuf::from(args.first().ok_or("flist umount: name the mount point")?);
    let subtype = fuse_options(options)?.subtype;
    match mount::state(&target, &subtype) {
        MountState::Absent => Err(format!("{}: nothing is mounted there", target.display())),
        // Its daemon is stopped or stuck: an unmount that waits for it would wait forever.
        MountState::NotAnswering {
            fstype, connection, ..
        } if fstype == format!("fuse.{subtype}") => {
            let done = mount::release(&target, connection)?;
            outln!(
                "{}: did not answer within {:.1} s: {done}",
                target.display(),
                mount::ANSWER_WITHIN.as_secs_f32()
            );
            Ok(0)
        }
        MountState::NotAnswering { fstype, .. } => Err(format!(
            "{}: a {fstype} mount that does not answer, not an flist; not touching it",
            target.display()
        )),
        // An flist mounted under another --fs-subtype still names its flist as the source.
        MountState::Other { fstype, source }
            if !(fstype.starts_with("fuse.")
                && crate::flist::meta::Manifest::open(std::path::Path::new(&source)).is_ok()) =>
        {
            Err(format!(
                "{}: a {fstype} mount, not an flist; not touching it",
                target.display()
            ))
        }
        _ => {
            crate::sys::mount::unmount(&target, options.lazy).map_err(|e| {
                if e.raw_os_error() == Some(nix::libc::EBUSY) {
                    format!("{e} (in use: close what uses it, or pass --lazy)")
                } else {
                    e.to_string()
                }
            })?;
            Ok(0)
        }
    }
}

fn inspect(options: &FlistOptions, json: bool) -> Result<i32, String> {
    let meta = meta_path(options)?;
    let manifest = crate::flist::meta::Manifest::open(&meta).map_err(|e| e.to_string())?;
    let routes = mount::effective_routes(&manifest, &open_options(options)?);
    let (mut files, mut dirs, mut links, mut other, mut bytes) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for inode in manifest.inodes() {
        match inode.kind() {
            crate::flist::meta::S_IFDIR => dirs += 1,
            crate::flist::meta::S_IFREG => {
                files += 1;
                bytes += inode.size;
            }
            crate::flist::meta::S_IFLNK => links += 1,
            _ => other += 1,
        }
    }
    let blocks = manifest.all_blocks().map_err(|e| e.to_string())?;
    let distinct: std::collections::HashSet<_> = blocks.iter().map(|(_, b)| b.id).collect();
    let shown = mount::describe_routes(&routes);
    if json {
        let value = serde_json::json!({
            "flist": meta, "entries": manifest.len(), "files": files, "directories": dirs, "symlinks": links,
            "other": other, "bytes": bytes, "blocks": blocks.len(), "distinct_blocks": distinct.len(),
            "routes": shown, "tags": manifest.tags(),
        });
        super::print_json(&value);
    } else {
        outln!("{}", meta.display());
        outln!("entries {} (files {files}, directories {dirs}, symlinks {links}, other {other}), {bytes} bytes", manifest.len());
        outln!("blocks {} ({} distinct)", blocks.len(), distinct.len());
        for route in shown {
            outln!("route {route}");
        }
        for (key, value) in manifest.tags() {
            outln!("tag {key}={value}");
        }
    }
    Ok(0)
}

fn ls(options: &FlistOptions, path: &str, json: bool) -> Result<i32, String> {
    let meta = meta_path(options)?;
    let manifest = crate::flist::meta::Manifest::open(&meta).map_err(|e| e.to_string())?;
    let dir = manifest
        .resolve(path)
        .ok_or_else(|| format!("{path}: no such entry in {}", meta.display()))?;
    let entries: Vec<u64> = if dir.is_dir() {
        manifest.children(dir.ino).to_vec()
    } else {
        vec![dir.ino]
    };
    if json {
        let rows: Vec<serde_json::Value> = entries
            .iter()
            .filter_map(|ino| manifest.inode(*ino))
            .map(|inode| {
                serde_json::json!({
                    "name": inode.name, "mode": inode.mode, "uid": inode.uid, "gid": inode.gid,
                    "size": inode.size,
                    "target": inode.target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()),
                })
            })
            .collect();
        super::print_json(&rows);
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    for ino in entries {
        let Some(inode) = manifest.inode(ino) else {
            continue;
        };
        let target = inode
            .target
            .as_ref()
            .map(|t| format!(" -> {}", String::from_utf8_lossy(t)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:07o} {:>5} {:>5} {:>10} {}{target}",
            inode.mode, inode.uid, inode.gid, inode.size, inode.name
        );
    }
    Ok(0)
}

fn cat(options: &FlistOptions, path: &str) -> Result<i32, String> {
    let fs = open_fs(options)?;
    let inode = fs
        .manifest
        .resolve(path)
        .ok_or_else(|| format!("{path}: no such entry in the flist"))?
        .clone();
    let attr = fs.attr(inode.ino).map_err(|e| format!("{path}: {e}"))?;
    if attr.kind != Kind::File {
        return Err(format!("{path}: not a regular file"));
    }
    let mut out = std::io::stdout().lock();
    let mut offset = 0u64;
    while offset < attr.size {
        let data = fs
            .read(inode.ino, offset, 4 << 20)
            .map_err(|e| format!("{path}: {e}"))?;
        if data.is_empty() {
            break;
        }
        out.write_all(&data).map_err(|e| e.to_string())?;
        offset += data.len() as u64;
    }
    Ok(0)
}

fn pack(options: &FlistOptions, args: &[String], json: bool) -> Result<i32, String> {
    let source = PathBuf::from(
        args.first()
            .ok_or("flist pack: name the directory to pack")?,
    );
    let output = options
        .meta
        .clone()
        .ok_or("flist pack: name the output with -m OUT.fl")?;
    let stores = options
        .stores
        .iter()
        .map(|s| crate::flist::pack::parse_store_spec(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut store_options = crate::flist::store::StoreOptions::default();
    if let Some(seconds) = options.store_timeout {
        store_options.request_timeout = Duration::from_secs(seconds);
    }
    let store_options = store_options.with_ca_file(options.ca_file.as_deref())?;
    let report = crate::flist::pack::pack(
        &source,
        &output,
        &stores,
        options.keep_passwords,
        &store_options,
    )?;
    if json {
        super::print_json(&report);
    } else {
        outln!(
            "{}: {} entries, {} files, {} bytes in {} blocks ({} bytes stored)",
            output.display(),
            report.entries,
            report.files,
            report.bytes,
            report.blocks,
            report.stored_bytes
        );
        if let Some(maps) = &report.maps {
            outln!("{}: {maps}", output.display());
        }
    }
    Ok(0)
}

fn prefetch(options: &FlistOptions, paths: &[String], json: bool) -> Result<i32, String> {
    if paths.is_empty() {
        return Err("flist prefetch: name files or directories inside the flist".into());
    }
    if options.cache.is_none() {
        return Err(
            "flist prefetch: give the mount's --cache DIR (that is where the blocks go)".into(),
        );
    }
    let fs = open_fs(options)?;
    let deadline = Duration::from_secs(options.store_timeout.unwrap_or(30).max(1) * 2);
    let report = crate::flist::prefetch::prefetch_paths(&fs, paths, deadline);
    let failed = report.failed > 0 || report.timed_out || !report.not_found.is_empty();
    if json {
        super::print_json(&report);
        return Ok(i32::from(failed));
    }
    outln!(
        "{} files, {} blocks: {} fetched, {} already cached, {} failed{}",
        report.files,
        report.blocks,
        report.fetched,
        report.cached,
        report.failed,
        if report.timed_out {
            " (deadline reached)"
        } else {
            ""
        }
    );
    for missing in &report.not_found {
        outln!("not in the flist: {missing}");
    }
    Ok(i32::from(failed))
}

fn route(options: &FlistOptions, args: &[String], json: bool) -> Result<i32, String> {
    let meta = meta_path(options)?;
    let show = |meta: &std::path::Path| -> Result<i32, String> {
        let manifest = crate::flist::meta::Manifest::open(meta).map_err(|e| e.to_string())?;
        let routes = mount::describe_routes(manifest.routes());
        if json {
            super::print_json(&routes);
        }
        for line in routes.iter().filter(|_| !json) {
            outln!("{line}");
        }
        Ok(0)
    };
    match args.first().map(String::as_str) {
        None => show(&meta),
        Some("list") if args.len() == 1 => show(&meta),
        Some("list") => {
            Err("flist route list: takes no stores (flist route set URL... replaces them)".into())
        }
        Some("set") => {
            let stores = args[1..]
                .iter()
                .chain(options.stores.iter())
                .map(|s| crate::flist::pack::parse_store_spec(s))
                .collect::<Result<Vec<_>, _>>()?;
            crate::flist::pack::set_routes(&meta, &stores)?;
            show(&meta)
        }
        Some(other) => Err(format!("flist route: unknown action {other:?} (list, set)")),
    }
}

fn verify(options: &FlistOptions, json: bool) -> Result<i32, String> {
    let fs = open_fs(options)?;
    let blocks = fs.manifest.all_blocks().map_err(|e| e.to_string())?;
    // Each distinct block is fetched once; a bad one is reported for every file using it.
    let mut users: std::collections::BTreeMap<[u8; 32], (crate::flist::meta::BlockRef, Vec<u64>)> =
        Default::default();
    for (ino, block) in &blocks {
        users
            .entry(block.id)
            .or_insert((*block, Vec::new()))
            .1
            .push(*ino);
    }
    let (mut missing, mut corrupt, mut ok) = (Vec::new(), Vec::new(), 0u64);
    for (block, inos) in users.values() {
        match fs.source.block(block) {
            Ok(_) => ok += 1,
            Err(e) => {
                let not_found = e.attempts.iter().all(|a| a.ends_with("not found"));
                let mut paths: Vec<String> =
                    inos.iter().map(|ino| fs.manifest.path_of(*ino)).collect();
                paths.dedup();
                for path in paths {
                    let line = format!("{path}: {e}");
                    if not_found {
                        missing.push(line)
                    } else {
                        corrupt.push(line)
                    }
                }
            }
        }
    }
    missing.sort();
    corrupt.sort();
    let failed = !missing.is_empty() || !corrupt.is_empty();
    if json {
        let value = serde_json::json!({
            "flist": meta_path(options)?, "verified_blocks": ok, "missing": missing, "corrupt": corrupt,
        });
        super::print_json(&value);
        return Ok(i32::from(failed));
    }
    for line in &missing {
        outln!("MISSING {line}");
    }
    for line in &corrupt {
        outln!("BAD {line}");
    }
    outln!(
        "{ok} blocks verified; {} files with missing blocks, {} with corrupt or unreachable ones",
        missing.len(),
        corrupt.len()
    );
    Ok(i32::from(failed))
}
