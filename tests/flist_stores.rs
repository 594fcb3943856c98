//! The remote stores against real servers on loopback: S3 through `s3s-fs`, which checks
//! SigV4 signatures (the fixture's read-only credentials; wrong ones are refused), and
//! zdb through Debian's `redis-server` (the same protocol). Packing writes to both.
#![cfg(feature = "system-tests")]

mod common;

use common::{agent, fixtures};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("nothing listens on {port}");
}

fn s3_server(root: &Path, access: &str, secret: &str) -> (Killed, u16) {
    let port = common::servers::free_port();
    let child = Command::new("s3s-fs")
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            access,
            "--secret-key",
            secret,
        ])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s3s-fs (make setup installs it)");
    wait_port(port);
    (Killed(child), port)
}

fn redis_server() -> (Killed, u16) {
    let port = common::servers::free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (make setup installs it)");
    wait_port(port);
    (Killed(child), port)
}

/// Mounts, compares every file's content with the source tree, unmounts.
fn mount_and_compare(name: &str, flist: &Path, extra: &[&str], source: &Path) {
    let mounted = common::mount(name, flist, extra);
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference", "-x", "fifo"])
        .arg(source)
        .arg(&mounted.target)
        .output()
        .unwrap();
    drop(mounted);
    assert!(
        diff.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&diff.stdout)
    );
}

fn odd_tree_source(name: &str) -> PathBuf {
    let src = common::scratch(name).join("src");
    std::fs::create_dir_all(&src).unwrap();
    let status = Command::new("tar")
        .args(["--numeric-owner", "-xpf"])
        .arg(fixtures().join("odd-tree/src.tar"))
        .arg("-C")
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success());
    src
}

/// s3s-fs serving a copy of the fixture's bucket (`flbucket`) with its read-only
/// credentials: (server, port, the directory of buckets).
fn fixture_bucket_server(name: &str) -> (Killed, u16, PathBuf) {
    let root = common::scratch(name).join("buckets");
    let status = Command::new("cp")
        .arg("-a")
        .arg(fixtures().join("odd-tree-variants/s3-bucket"))
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success());
    let (server, port) = s3_server(&root, "READKEY", "READSECRET");
    (server, port, root)
}

#[test]
fn s3_with_sigv4_read_credentials_and_wrong_ones() {
    let (_server, port, _) = fixture_bucket_server("s3-root");
    let source = odd_tree_source("s3-source");
    let rewrite = format!(
        "s3://READKEY:READSECRET@127.0.0.1:19000/=s3://READKEY:READSECRET@127.0.0.1:{port}/"
    );
    mount_and_compare(
        "s3-mount",
        &fixtures().join("odd-tree-variants/s3.fl"),
        &["--store-rewrite", &rewrite],
        &source,
    );

    // Wrong secret: refused by the server, said clearly, the secret never shown.
    let wrong = format!("s3://READKEY:NOTTHESECRET@127.0.0.1:{port}/flbucket?region=garage");
    let out = agent(&[
        "flist",
        "verify",
        "-m",
        fixtures().join("odd-tree-variants/s3.fl").to_str().unwrap(),
        "--store",
        &wrong,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("HTTP 403 SignatureDoesNotMatch") && shown.contains("secret key is wrong"),
        "{shown}"
    );
    assert!(
        !shown.contains("NOTTHESECRET") && shown.contains("READKEY:***@"),
        "{shown}"
    );
}

#[test]
fn packing_into_s3_and_reading_back() {
    let root = common::scratch("s3-pack-root").join("buckets");
    std::fs::create_dir_all(root.join("packbucket")).unwrap();
    let (_server, port) = s3_server(&root, "WRITEKEY", "WRITESECRET");
    let source = odd_tree_source("s3-pack-source");
    let flist = source.parent().unwrap().join("s3.fl");
    let url = format!("s3://WRITEKEY:WRITESECRET@127.0.0.1:{port}/packbucket?region=us-east-1");
    common::pack(&flist, &url, &source);
    // The route keeps the access key, not the secret (as rfs pack does).
    let routes = initagent::flist::meta::Manifest::open(&flist)
        .unwrap()
        .routes()
        .to_vec();
    assert_eq!(
        routes[0].url,
        format!("s3://WRITEKEY@127.0.0.1:{port}/packbucket?region=us-east-1")
    );
    mount_and_compare("s3-pack-mount", &flist, &["--store", &url], &source);
}

#[test]
fn zdb_through_redis() {
    let (_server, port) = redis_server();
    let source = odd_tree_source("zdb-source");
    let flist = source.parent().unwrap().join("zdb.fl");
    let url = format!("zdb://127.0.0.1:{port}/3");
    common::pack(&flist, &url, &source);
    // The blobs are under their raw 32-byte ids in database 3, as 0-db namespaces hold them.
    let keys = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "-n", "3", "DBSIZE"])
        .output();
    if let Ok(keys) = keys {
        assert_eq!(String::from_utf8_lossy(&keys.stdout).trim(), "316");
    }
    mount_and_compare("zdb-mount", &flist, &[], &source);
    // A zdb store that is not there: bounded failure, not a 30 s hang per block.
    let dead = format!("zdb://127.0.0.1:{}/3", common::servers::free_port());
    let started = std::time::Instant::now();
    let out = agent(&[
        "flist",
        "cat",
        "-m",
        flist.to_str().unwrap(),
        "--store",
        &dead,
        "--store-timeout",
        "1",
        "/hello.txt",
    ]);
    assert_eq!(out.status.code(), Some(1));
    // A hang check, not a speed check: the deadlines add up to a few seconds.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn https_store_behind_a_private_ca_needs_the_ca_file_and_is_never_unverified() {
    let dir = common::scratch("https-private-ca");
    let (ca, cert, key) = common::servers::private_ca(&dir, "IP:127.0.0.1");
    let server = common::servers::https_dir(&fixtures().join("odd-tree/store"), &cert, &key);
    let port = server.port;
    let flist = fixtures().join("odd-tree/odd-tree.fl");
    let fl = flist.to_str().unwrap();
    let store = format!("https://127.0.0.1:{port}/");
    let cat = |extra: &[&str]| {
        let mut args = vec!["flist", "cat", "-m", fl, "--store", &store];
        args.extend_from_slice(extra);
        args.push("/hello.txt");
        agent(&args)
    };
    // The web roots do not know this CA: refused, and the error says it is about trust.
    let out = cat(&["--store-timeout", "2"]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("issuer"),
        "{err}"
    );
    // A file with no certificate in it is an error naming the file.
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let out = cat(&["--ca-file", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("junk.pem"),
        "{out:?}"
    );
    // With the CA file, the daemon (which gets the option passed on) serves the whole tree.
    mount_and_compare(
        "https-private-ca-mount",
        &flist,
        &["--store", &store, "--ca-file", ca.to_str().unwrap()],
        &odd_tree_source("https-private-ca-src"),
    );
}

/// The node's clock, three hours behind.
fn three_hours_behind() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now - 3 * 3600
}

#[test]
fn a_node_clock_hours_off_signs_again_with_the_stores_time() {
    use initagent::flist::store::{s3::S3Store, BlockStore, StoreOptions};
    let (_server, port, root) = fixture_bucket_server("s3-skew-root");
    let url = format!("s3://READKEY:READSECRET@127.0.0.1:{port}/flbucket?region=garage");
    // hello.txt's block (the fixture's test vector).
    let name = "30ee1d63f9dcdd993f73bdfad60ed773e26350dcde159d42b5736b6bc3e46971";
    let mut id = [0u8; 32];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&name[2 * i..2 * i + 2], 16).unwrap();
    }
    let stored = std::fs::read(root.join("flbucket").join(name)).unwrap();

    // s3s-fs refuses a request dated three hours ago (RequestTimeTooSkewed); the store
    // signs again with the server's time and keeps the offset.
    let store = S3Store::new(&url, &StoreOptions::default())
        .unwrap()
        .with_clock(three_hours_behind);
    assert_eq!(store.get(&id).unwrap(), stored);
    let offset = store.clock_offset().expect("the skew was found");
    assert!((offset - 3 * 3600).abs() < 120, "{offset}");
    assert_eq!(store.get(&id).unwrap(), stored);

    // A node on time is not reported off.
    let on_time = S3Store::new(&url, &StoreOptions::default()).unwrap();
    assert_eq!(on_time.get(&id).unwrap(), stored);
    assert_eq!(on_time.clock_offset(), None);
}

/// Every regular file under `dir`, sorted, relative.
fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in std::fs::read_dir(dir.join(&relative)).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            let path = relative.join(entry.file_name());
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// What reading the files through a faulty store gave.
#[derive(Debug)]
struct Reads {
    same: usize,
    failed: Vec<String>,
    slowest_failure: std::time::Duration,
    daemon_peak_kib: u64,
}

/// Reads `files` of `source` through a mount of `flist` (with `args`), until `limit`
/// failures; a read that succeeds must give the source's bytes, never others.
fn read_through(
    name: &str,
    flist: &Path,
    args: &[&str],
    source: &Path,
    files: &[PathBuf],
    limit: usize,
) -> Reads {
    let mounted = common::mount(name, flist, args);
    let mut reads = Reads {
        same: 0,
        failed: Vec::new(),
        slowest_failure: std::time::Duration::ZERO,
        daemon_peak_kib: 0,
    };
    for file in files {
        let started = std::time::Instant::now();
        match std::fs::read(mounted.target.join(file)) {
            Ok(bytes) => {
                assert!(
                    bytes == std::fs::read(source.join(file)).unwrap(),
                    "{name}: {} read back with other bytes",
                    file.display()
                );
                reads.same += 1;
            }
            Err(e) => {
                reads.slowest_failure = reads.slowest_failure.max(started.elapsed());
                reads.failed.push(format!("{}: {e}", file.display()));
                if reads.failed.len() >= limit {
                    break;
                }
            }
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", mounted.pid.unwrap()));
    reads.daemon_peak_kib = status
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0);
    reads
}

/// The fault matrix for one store kind behind the proxy (`args` point the mount at it,
/// with a 2 s store timeout): what each fault gives, file by file.
fn fault_matrix(
    kind: &str,
    flist: &Path,
    proxy: &common::proxy::Proxy,
    args: &[&str],
    source: &Path,
) {
    use common::proxy::Fault;
    let timeout = std::time::Duration::from_secs(2);
    let all = files_of(source);
    // Python's server closes every connection after one answer, so each block is a new
    // connection that meets the fault: the faults read the large files (their answers
    // are larger than where a fault starts) and every tenth of the others.
    let large = |f: &PathBuf| std::fs::metadata(source.join(f)).unwrap().len() >= 64 * 1024;
    let sample: Vec<PathBuf> = all
        .iter()
        .enumerate()
        .filter(|(i, f)| large(f) || i % 10 == 0)
        .map(|(_, f)| f.clone())
        .collect();
    let large: Vec<PathBuf> = all.iter().filter(|f| large(f)).cloned().collect();
    for (fault, expect_all) in [
        (Fault::None, true),
        (Fault::Slow(std::time::Duration::from_millis(600)), true),
        (Fault::FailFirst(1), true),
        (Fault::Corrupt(700), false),
        (Fault::Truncate(700), false),
        (Fault::Stall(700), false),
        (Fault::Trickle(700), false),
    ] {
        proxy.set(fault);
        let name = format!("{kind}-fault-{}", format!("{fault:?}").to_lowercase());
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let slow = matches!(fault, Fault::Stall(_) | Fault::Trickle(_));
        let (files, limit) = match fault {
            Fault::None => (&all, all.len()),
            _ if slow => (&large, 2),
            _ => (&sample, sample.len()),
        };
        let started = std::time::Instant::now();
        let reads = read_through(&name, flist, args, source, files, limit);
        println!("{kind} {fault:?} ({:?}): {reads:?}", started.elapsed());
        if expect_all {
            assert_eq!(reads.same, files.len(), "{kind} {fault:?}: {reads:?}");
            continue;
        }
        // The fault was met; the reads it hit failed with an I/O error or, tried again on
        // another connection, gave the right bytes (never other bytes: read_through).
        assert!(
            proxy.applied() > 0,
            "{kind} {fault:?} was never met: {reads:?}"
        );
        assert!(
            reads
                .failed
                .iter()
                .all(|f| f.contains("Input/output error")),
            "{kind} {fault:?}: {reads:?}"
        );
        if slow {
            assert!(!reads.failed.is_empty(), "{kind} {fault:?}: {reads:?}");
            // Within twice the store timeout (two rounds), plus the retry's pause.
            assert!(
                reads.slowest_failure <= timeout * 2 + std::time::Duration::from_secs(2),
                "{kind} {fault:?}: {reads:?}"
            );
            // Nothing piles up while the store stalls: the memory cache's bound (16 MiB,
            // the blocks in flight included) and the daemon's own memory (24-30 MiB in
            // all here on a quiet machine, up to 40 under the whole suite's load).
            assert!(
                reads.daemon_peak_kib < 48 * 1024,
                "{kind} {fault:?}: {reads:?}"
            );
        }
    }
}

#[test]
fn http_and_s3_stores_that_stall_trickle_truncate_corrupt_or_fail_first() {
    let source = odd_tree_source("faults-source");
    // HTTP: the odd tree packed into a directory the HTTP server serves.
    let store = source.parent().unwrap().join("store");
    let flist = source.parent().unwrap().join("http.fl");
    common::pack(&flist, &format!("dir://{}", store.display()), &source);
    let http = common::servers::http_dir(&store);
    let proxy = common::proxy::Proxy::start(http.port);
    let url = format!("http://127.0.0.1:{}/", proxy.port);
    fault_matrix(
        "http",
        &flist,
        &proxy,
        &["--store", &url, "--store-timeout", "2"],
        &source,
    );

    // S3: the fixture's bucket in s3s-fs, signed requests through the proxy.
    let (_server, port, _) = fixture_bucket_server("faults-s3");
    let proxy = common::proxy::Proxy::start(port);
    let rewrite = format!(
        "s3://READKEY:READSECRET@127.0.0.1:19000/=s3://READKEY:READSECRET@127.0.0.1:{}/",
        proxy.port
    );
    fault_matrix(
        "s3",
        &fixtures().join("odd-tree-variants/s3.fl"),
        &proxy,
        &["--store-rewrite", &rewrite, "--store-timeout", "2"],
        &source,
    );
}

#[test]
fn a_route_range_without_a_store_is_refused_at_open() {
    let source = odd_tree_source("route-gap-source");
    let flist = source.parent().unwrap().join("gap.fl");
    let store = format!("dir://{}", source.parent().unwrap().join("store").display());
    common::pack(&flist, &store, &source);
    let half = format!("00-7f={store}");
    let out = agent(&[
        "flist",
        "route",
        "set",
        "-m",
        flist.to_str().unwrap(),
        &half,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = common::scratch("route-gap").join("mnt");
    std::fs::create_dir_all(&target).unwrap();
    let out = agent(&[
        "flist",
        "mount",
        "-m",
        flist.to_str().unwrap(),
        target.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("no store route covers blocks whose id starts with 80-ff")
            && said.contains("flist route set"),
        "{said}"
    );
    assert!(
        !String::from_utf8_lossy(&std::fs::read("/proc/mounts").unwrap())
            .contains(target.to_str().unwrap())
    );
}
