//! The boot report off the node, host side, with real servers: into S3 as operators deploy
//! it (s3s-fs behind nginx TLS on 443, a private CA, the secret only in the profile) and
//! over HTTP(S) PUT (Debian's nginx with its WebDAV module; TLS with a private CA), then read back by
//! `initagent fleet report` (S3's ListObjectsV2 through the same TLS, a directory). The
//! secret is in no output, no record and no stored report. A store that refuses
//! connections or never answers costs one bounded request and leaves a record saying so.
//! The guest side (stage 1 sending after real boots, the zinit service) is `vm_fleet`.
#![cfg(feature = "system-tests")]

mod common;

use common::netns::NetNs;
use common::s3tls::{self, S3Tls, BUCKET, SECRET};
use std::path::Path;
use std::process::Output;

/// A report as stage 1 leaves it: handed off, one step degraded.
const REPORT: &str = r#"{"schema":1,"agent_version":"t","kernel_release":"6.1.0-t","cmdline":"",
 "zos":null,"config":null,"warnings":["flist store s3s://AKIDINITAGENT:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLE=KEY@10.0.2.2/flists slow"],
 "steps":[{"name":"net","start_us":0,"end_us":1500000,"outcome":"ok","detail":"dhcp","pid":1},
          {"name":"coldplug","start_us":1500000,"end_us":2500000,"outcome":"degraded","detail":"1 device without a driver","pid":1}],
 "result":{"status":"handed-off","detail":"exec /sbin/zinit init","at_us":2600000}}"#;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A run directory with the report and a profile whose lines are `profile`.
fn node(dir: &Path, profile: &str) -> (String, String) {
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("report.json"), REPORT).unwrap();
    std::fs::write(dir.join("config.toml"), profile).unwrap();
    (
        run.join("report.json").display().to_string(),
        dir.join("config.toml").display().to_string(),
    )
}

fn send(ns: Option<&NetNs>, report: &str, profile: &str, extra: &[&str]) -> Output {
    let mut command = match ns {
        Some(ns) => ns.command(env!("CARGO_BIN_EXE_initagent")),
        None => std::process::Command::new(env!("CARGO_BIN_EXE_initagent")),
    };
    command
        .args(["report", "send", "--report", report, "--profile", profile])
        .args(["--cmdline", "quiet"])
        .args(extra)
        .output()
        .unwrap()
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path.display().to_string());
        }
    }
    found.sort();
    found
}

#[test]
fn reports_go_into_s3_over_tls_and_come_back_as_a_fleet() {
    let dir = common::scratch("report-s3");
    let ns = NetNs::create();
    let s3 = S3Tls::start(&dir, &ns, "IP:127.0.0.1");
    let url = s3tls::url("127.0.0.1", BUCKET, SECRET);
    let mut outputs = String::new();
    for node_id in ["rack1-n1", "rack1-n2"] {
        let here = dir.join(node_id);
        let (report, profile) = node(
            &here,
            &format!(
                "report_url = \"{url}\"\nflist.ca_file = \"{}\"\nnode_id = \"{node_id}\"\n",
                s3.ca.display()
            ),
        );
        let out = send(Some(&ns), &report, &profile, &["--as", "initagent-report"]);
        outputs.push_str(&text(&out));
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("as reports/{node_id}/")),
            "{}",
            text(&out)
        );
        // The record says where it went, by whom, for which result.
        let record = std::fs::read_to_string(here.join("run/upload.json")).unwrap();
        outputs.push_str(&record);
        let record: serde_json::Value = serde_json::from_str(&record).unwrap();
        assert_eq!(record["ok"], true);
        assert_eq!(record["by"], "initagent-report");
        // Degraded: the service sends again; a clean boot stage 1 sent would not be.
        let again = send(Some(&ns), &report, &profile, &[]);
        assert!(text(&again).contains("sent to"), "{}", text(&again));
    }
    let stored = files_under(&s3.buckets.join(BUCKET).join("reports"));
    assert_eq!(stored.len(), 2, "{stored:?}");
    for path in &stored {
        let body = std::fs::read_to_string(path).unwrap();
        assert!(!body.contains(SECRET), "{path}: the secret went along");
        assert!(
            body.contains("AKIDINITAGENT:***@"),
            "{path}: the warning is kept, masked"
        );
    }
    // The fleet view through S3's listing, the URL read from a file (not argv).
    let store_file = dir.join("store.url");
    std::fs::write(&store_file, &url).unwrap();
    let out = ns
        .command(env!("CARGO_BIN_EXE_initagent"))
        .args(["fleet", "report", "--json", "--store-file"])
        .arg(&store_file)
        .arg("--ca-file")
        .arg(&s3.ca)
        .output()
        .unwrap();
    outputs.push_str(&text(&out));
    assert!(out.status.success(), "{}", text(&out));
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["fleet"]["nodes"], 2, "{view:#}");
    assert_eq!(view["fleet"]["last_boots"]["degraded"], 2, "{view:#}");
    assert_eq!(view["fleet"]["troubled"][0]["node"], "rack1-n1");
    // A credential on the command line is refused, as a wrong command line.
    let out = common::agent(&["fleet", "report", "--store", &url]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--store-file"), "{}", text(&out));
    outputs.push_str(&text(&out));
    assert!(!outputs.contains(SECRET), "the secret was shown: {outputs}");
}

#[test]
fn reports_go_over_http_put_and_a_dead_store_costs_one_bounded_request() {
    let dir = common::scratch("report-http");
    let port = common::servers::free_port();
    let _dav = common::servers::nginx_dav(&dir.join("dav"), None, port);
    let (report, profile) = node(
        &dir.join("n1"),
        &format!("report_url = \"http://127.0.0.1:{port}/fleet\"\nnode_id = \"http-n1\"\n"),
    );
    let out = send(None, &report, &profile, &["--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said["sent"], true, "{said:#}");
    let stored = files_under(&dir.join("dav/root/fleet/reports/http-n1"));
    assert_eq!(stored.len(), 1, "{stored:?}");
    // The same over HTTPS, the server's certificate from a private CA the profile trusts.
    let (ca, cert, key) = common::servers::private_ca(&dir, "IP:127.0.0.1");
    let tls_port = common::servers::free_port();
    let _dav_tls = common::servers::nginx_dav_tls(&dir.join("dav-tls"), tls_port, &cert, &key);
    let (report, profile) = node(
        &dir.join("n2"),
        &format!(
            "report_url = \"https://127.0.0.1:{tls_port}/fleet\"\nflist.ca_file = \"{}\"\nnode_id = \"https-n2\"\n",
            ca.display()
        ),
    );
    let out = send(None, &report, &profile, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        files_under(&dir.join("dav-tls/root/fleet/reports/https-n2")).len(),
        1
    );
    // `fleet report` over the directory nginx wrote.
    let out = common::agent(&[
        "fleet",
        "report",
        "--store",
        dir.join("dav/root/fleet").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("1 reports of 1 nodes"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains(
            "DEGRADED coldplug degraded (coldplug: 1 device without a driver): 1 node (http-n1)"
        ),
        "{}",
        text(&out)
    );

    // Refused at once, and a store that accepts and never answers: one request each,
    // within report_timeout, then exit 1 and a record of why.
    let silent = common::servers::silent();
    for (name, url, why) in [
        ("refused", "http://127.0.0.1:1/fleet".to_string(), "onnect"),
        (
            "silent",
            format!("http://127.0.0.1:{}/fleet", silent.port),
            "imeout",
        ),
    ] {
        let (report, profile) = node(
            &dir.join(name),
            &format!("report_url = \"{url}\"\nreport_timeout = 2\nnode_id = \"n\"\n"),
        );
        let started = std::time::Instant::now();
        let out = send(None, &report, &profile, &[]);
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
        assert!(
            text(&out).contains("not sent") && text(&out).contains(why),
            "{name}: {}",
            text(&out)
        );
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(name).join("run/upload.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(record["ok"], false, "{name}: {record:#}");
        // Generous: a bound, not a benchmark (report_timeout is 2 s).
        assert!(took.as_secs() < 20, "{name}: {took:?}");
    }
    // No report_url: nothing to do, exit 0 (the service blocks nothing).
    let (report, profile) = node(&dir.join("none"), "");
    let out = send(None, &report, &profile, &[]);
    assert!(
        out.status.success() && text(&out).contains("no report_url"),
        "{}",
        text(&out)
    );
}
