//! `make test`'s closing summary (`tests/summary.awk`) over cargo's output: every binary's
//! tests add up, a binary that failed is named, one that ended without a result line
//! (crashed, killed) counts as a failure, and a run where nothing ran is not green.

use std::io::Write;
use std::process::{Command, Stdio};

fn summary(log: &str) -> String {
    let mut awk = Command::new("awk")
        .arg("-f")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/summary.awk"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("awk");
    awk.stdin.take().unwrap().write_all(log.as_bytes()).unwrap();
    let out = awk.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_binary_counts_and_failures_are_named() {
    let log = "\
     Running unittests src/lib.rs (target/debug/deps/initagent-1)
test result: ok. 180 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.0s
     Running tests/vm_node.rs (target/debug/deps/vm_node-2)
test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 9s
     Running tests/vm_spine.rs (target/debug/deps/vm_spine-3)
thread 'main' has overflowed its stack
     Running tests/zinit_services.rs (target/debug/deps/zinit_services-4)
test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s
   Doc-tests initagent
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.0s
";
    assert_eq!(
        summary(log),
        "FAILED tests/vm_node.rs: 1 failed\n\
         FAILED tests/vm_spine.rs: no result: it crashed or was killed\n\
         summary: 186 passed, 2 failed\n"
    );
}

#[test]
fn a_run_where_nothing_ran_is_a_failure() {
    let out = summary("error[E0425]: cannot find value `x` in this scope\n");
    assert!(out.ends_with("summary: 0 passed, 1 failed\n"), "{out}");
}
