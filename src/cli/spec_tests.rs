use super::*;

fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

type Run = (
    &'static str,
    Vec<(&'static str, Option<String>)>,
    Vec<String>,
);

fn run(line: &str) -> Run {
    match parse(&words(line)) {
        Ok(Parsed::Run {
            command,
            given,
            positional,
        }) => (
            command,
            given.into_iter().map(|(o, v)| (o.long, v)).collect(),
            positional,
        ),
        other => panic!("{line}: {other:?}"),
    }
}

fn refused(line: &str) -> String {
    match parse(&words(line)) {
        Err(e) => e.to_string(),
        other => panic!("{line}: accepted as {other:?}"),
    }
}

#[test]
fn commands_and_subcommands_take_their_own_options() {
    let (command, given, positional) = run("status --json --report /tmp/r.json");
    assert_eq!(command, "status");
    assert_eq!(
        given,
        vec![("json", None), ("report", Some("/tmp/r.json".into()))]
    );
    assert!(positional.is_empty());
    let (command, given, positional) = run("modules resolve -D e1000e --root=/x");
    assert_eq!(command, "modules resolve");
    assert_eq!(
        given,
        vec![("show-depends", None), ("root", Some("/x".into()))]
    );
    assert_eq!(positional, ["e1000e"]);
    let (command, given, _) = run("flist pack -s 00-ff=dir:///s -m out.fl tree");
    assert_eq!(command, "flist pack");
    assert_eq!(given[0], ("store", Some("00-ff=dir:///s".into())));
    assert_eq!(run("flist unmount /mnt").0, "flist umount");
    // One long name, two meanings: a flag of status, a store of net up.
    assert_eq!(run("status --check").1, vec![("check", None)]);
    assert_eq!(
        run("net up --check http://x").1,
        vec![("check", Some("http://x".into()))]
    );
}

#[test]
fn an_option_of_another_command_is_refused() {
    let e = refused("status --lazy");
    assert!(e.contains("--lazy is not an option of this command"), "{e}");
    assert!(e.contains("initagent status --help"), "{e}");
    assert!(refused("status --store x").contains("not an option"));
    assert!(refused("flist verify --bogus").contains("unknown option --bogus"));
    assert!(refused("depmod stamp --json").contains("--json is not an option"));
    assert!(refused("flist mount --json /x").contains("--json is not an option"));
    assert!(refused("status --check --json").contains("--check and --json do not go together"));
    assert!(refused("modules status --lsmod --json").contains("do not go together"));
    // A flag given a value, a value option without one.
    assert!(refused("status --json=yes").contains("--json"));
    assert!(refused("status --report").contains("--report"));
}

#[test]
fn wrong_words_are_refused_with_what_would_be_right() {
    assert!(refused("").contains("name a command"));
    assert!(refused("frobnicate").contains("unknown command \"frobnicate\""));
    let e = refused("flist");
    assert!(e.contains("mount") && e.contains("verify"), "{e}");
    assert!(refused("flist frob").contains("unknown subcommand \"frob\""));
    assert!(refused("status extra").contains("takes no arguments"));
    assert!(refused("modules info").contains("takes NAME|FILE"));
    assert!(refused("modules info a b").contains("takes NAME|FILE"));
    assert!(refused("--json status").contains("name the command first"));
    assert!(refused("flist -m x mount").contains("name the subcommand first"));
}

#[test]
fn help_is_per_command() {
    for (line, key) in [
        ("--help", ""),
        ("help", ""),
        ("status --help", "status"),
        ("status -h --bogus-after-help-is-still-checked", "status"),
        ("help modules load", "modules load"),
        ("modules load --help", "modules load"),
        ("flist --help", "flist"),
        ("help flist", "flist"),
    ] {
        match parse(&words(line)) {
            Ok(Parsed::Help(k)) => assert_eq!(k, key, "{line}"),
            Err(e) if line.contains("bogus") => assert!(e.to_string().contains("unknown option")),
            other => panic!("{line}: {other:?}"),
        }
    }
    assert_eq!(parse(&words("--version")), Ok(Parsed::Version));
    let text = help_text("flist mount");
    assert!(
        text.starts_with("usage: initagent flist mount [options] DIR\n"),
        "{text}"
    );
    assert!(text.contains("--store-timeout SECS") && text.contains("exit: 0 done"));
    assert!(!text.contains("--lsmod"));
    let group = help_text("flist");
    assert!(group.contains("flist mount") && !group.contains("modules load"));
    let all = help_text("");
    assert!(all.contains("modules load") && all.contains("exit codes"));
}

#[test]
fn every_option_is_shown_once_per_command_and_json_goes_where_commands_report() {
    for command in COMMANDS {
        let mut longs: Vec<&str> = command.options.iter().map(|o| o.long).collect();
        longs.sort();
        let count = longs.len();
        longs.dedup();
        assert_eq!(longs.len(), count, "{}: an option twice", command.name);
    }
    let without: Vec<&str> = COMMANDS
        .iter()
        .filter(|c| !c.reports_json())
        .map(|c| c.name)
        .collect();
    assert_eq!(
        without,
        [
            "stage1",
            "handoff",
            "modprobe",
            "flist mount",
            "flist umount",
            "flist cat",
            "net renew",
            "depmod stamp",
            "version",
            "help"
        ]
    );
}

#[test]
fn the_docs_table_is_this_grammar() {
    let docs = include_str!("../../docs/cli.md");
    assert!(
        docs.contains(&table()),
        "docs/cli.md's table is out of date; it should read:\n{}",
        table()
    );
}
