//! S3 as operators deploy it, on the host: s3s-fs behind nginx TLS on port 443 in the
//! test's network namespace, a private CA, URLs without a port, a secret with `/` and
//! `+` in it. Pack, route, inspect, cat, mount and read return the exact bytes; the
//! secret shows nowhere (outputs, errors, the mount daemon's argv); a wrong secret and
//! a bucket name S3 refuses are named by their S3 codes; TLS is never unverified. A node
//! whose clock is hours off still reads (the signer takes the store's time).
#![cfg(feature = "system-tests")]

mod common;

use common::netns::NetNs;
use common::s3tls::{self, S3Tls, ACCESS, BUCKET, SECRET};
use std::path::Path;

/// A small tree: a file of four blocks (the last one short; a static program's bytes),
/// a text file, a subdirectory.
fn tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut big = std::fs::read("/bin/busybox").expect("busybox-static (make setup)");
    big.truncate((3 << 19) + 4321);
    assert_eq!(big.len(), (3 << 19) + 4321);
    std::fs::write(dir.join("big.bin"), big).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello over TLS on 443\n").unwrap();
    std::fs::write(dir.join("sub/inner.txt"), "inner\n").unwrap();
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The output must not show the secret, nor any piece of it long enough to matter.
fn assert_no_secret(shown: &str) {
    for piece in SECRET.split(['/', '+', '=']) {
        assert!(
            !shown.contains(piece),
            "secret part {piece:?} shown: {shown}"
        );
    }
}

#[test]
fn s3_behind_tls_on_443_without_a_port_and_the_secret_shown_nowhere() {
    let dir = common::scratch("s3-tls");
    let ns = NetNs::create();
    let store = S3Tls::start(&dir, &ns, "IP:127.0.0.1");
    let ca = store.ca.to_str().unwrap();
    let src = dir.join("src");
    tree(&src);
    let flist = dir.join("tree.fl");
    let fl = flist.to_str().unwrap();
    let url = s3tls::url("127.0.0.1", BUCKET, SECRET);

    // Pack over TLS; the route it writes keeps the key, not the secret (as rfs pack).
    let out = ns.agent(&[
        "flist",
        "pack",
        "-m",
        fl,
        "--store",
        &url,
        "--ca-file",
        ca,
        src.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_no_secret(&text(&out));
    assert!(
        std::fs::read_dir(store.buckets.join(BUCKET))
            .unwrap()
            .count()
            >= 6
    );

    // The route as Zero-OS flists carry it: read-only credentials in it.
    let out = ns.agent(&["flist", "route", "set", "-m", fl, &url]);
    assert!(out.status.success(), "{}", text(&out));
    let out = ns.agent(&["flist", "inspect", "-m", fl]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "s3s://{ACCESS}:***@127.0.0.1/{BUCKET}?region=garage"
        )),
        "{}",
        text(&out)
    );
    assert_no_secret(&text(&out));

    // cat through the route: the exact bytes.
    let out = ns.agent(&["flist", "cat", "-m", fl, "--ca-file", ca, "/big.bin"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == std::fs::read(src.join("big.bin")).unwrap());

    // A mount daemon given the store on the command line: it serves the exact tree, and
    // its own argv (readable by any user) does not hold the secret. Mount, read and check
    // in one namespace invocation: each `ip netns exec` has its own mount namespace.
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let script = format!(
        "set -e\n\
         out=$(\"$0\" flist mount -m {fl} --store \"$1\" --ca-file {ca} --cache {cache} {mnt})\n\
         pid=${{out##*daemon pid }}; pid=${{pid%)}}\n\
         echo \"argv: $(tr '\\0' ' ' < /proc/$pid/cmdline)\"\n\
         diff -r {src} {mnt} && echo same\n\
         \"$0\" flist umount {mnt}\n",
        cache = dir.join("cache").display(),
        mnt = mnt.display(),
        src = src.display(),
    );
    let out = ns
        .command("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_initagent"), &url])
        .output()
        .unwrap();
    let shown = text(&out);
    assert!(
        out.status.success() && shown.contains("\nsame\n"),
        "{shown}"
    );
    let argv = shown.lines().find(|l| l.starts_with("argv: ")).unwrap();
    assert!(argv.contains("--stores-stdin"), "{argv}");
    assert_no_secret(argv);

    // A wrong secret: S3's code and what to do, never the secret given.
    let wrong = s3tls::url("127.0.0.1", BUCKET, "NOT/THE+SECRET");
    let out = ns.agent(&[
        "flist",
        "cat",
        "-m",
        fl,
        "--store",
        &wrong,
        "--ca-file",
        ca,
        "/hello.txt",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("SignatureDoesNotMatch") && shown.contains("secret key is wrong"),
        "{shown}"
    );
    assert!(
        !shown.contains("NOT/THE") && !shown.contains("THE+SECRET"),
        "{shown}"
    );

    // A bucket name S3 refuses: named by its code, and no manifest half-written. One
    // small file: s3s-fs answers before it reads a body, and a large one still being
    // sent through nginx then ends in a 502 from nginx (a broken pipe) instead.
    let small = dir.join("small");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::copy(src.join("hello.txt"), small.join("hello.txt")).unwrap();
    let short = dir.join("short.fl");
    let out = ns.agent(&[
        "flist",
        "pack",
        "-m",
        short.to_str().unwrap(),
        "--store",
        &s3tls::url("127.0.0.1", "ab", SECRET),
        "--ca-file",
        ca,
        small.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("InvalidBucketName"), "{}", text(&out));
    assert!(!short.exists());
    assert_no_secret(&text(&out));

    // Without the CA the store is not trusted: TLS stays verified.
    let out = ns.agent(&["flist", "cat", "-m", fl, "/hello.txt"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).to_lowercase().contains("certificate"),
        "{}",
        text(&out)
    );
}
