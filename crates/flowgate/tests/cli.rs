//! The `flowgate` command line as an operator meets it: every command and
//! subcommand says what it does in `--help`, the top-level helps point at
//! the docs, and `flowgate completions` prints scripts that complete every
//! command (the bash one is run in a real bash).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{FLOWGATE, run_bounded};

/// Runs `flowgate ARGS`; panics unless it succeeds; returns its stdout.
fn flowgate(args: &[&str]) -> String {
    let mut command = Command::new(FLOWGATE);
    command.args(args);
    let out = run_bounded(command, Duration::from_secs(20));
    assert!(
        out.status.success(),
        "flowgate {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The (name, description) of each command in a help's "Commands:" list.
fn commands(help: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line == "Commands:" {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if line.trim().is_empty() {
            break;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 2 {
            let text = line.trim_start();
            let (name, description) = text.split_once(' ').unwrap_or((text, ""));
            out.push((name.to_string(), description.trim().to_string()));
        } else if let Some(last) = out.last_mut() {
            // A wrapped description.
            last.1.push(' ');
            last.1.push_str(line.trim());
        }
    }
    out
}

#[test]
fn every_command_explains_itself_and_the_main_helps_point_at_the_docs() {
    let mut pending = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = flowgate(&args);
        for (name, description) in commands(&help) {
            if name == "help" {
                continue;
            }
            assert!(
                description.split_whitespace().count() >= 2,
                "`flowgate {} {name}` has no real description in --help: {description:?}",
                path.join(" ")
            );
            let mut sub = path.clone();
            sub.push(name);
            pending.push(sub);
        }
        seen += 1;
    }
    assert!(seen > 30, "only {seen} commands were found");
    for args in [&["--help"][..], &["serve", "--help"], &["admin", "--help"]] {
        let help = flowgate(args);
        assert!(
            help.contains("docs/deployment.md"),
            "flowgate {args:?} does not point at the docs:\n{help}"
        );
    }
    let serve = flowgate(&["serve", "--help"]);
    for default in [
        "127.0.0.1:8773",
        "127.0.0.1:6653",
        "9773",
        "/var/lib/flowgate",
        "RUST_LOG",
    ] {
        assert!(
            serve.contains(default),
            "serve --help does not mention {default}:\n{serve}"
        );
    }
}

#[test]
fn completion_scripts_complete_every_command() {
    let top: Vec<String> = commands(&flowgate(&["--help"]))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let admin: Vec<String> = commands(&flowgate(&["admin", "--help"]))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(top.iter().any(|c| c == "completions") && admin.iter().any(|c| c == "backup"));
    for shell in ["bash", "zsh", "fish"] {
        let script = flowgate(&["completions", shell]);
        for command in top.iter().chain(&admin) {
            assert!(
                script.contains(command.as_str()),
                "the {shell} script lacks {command}"
            );
        }
    }
    // The bash script, loaded into a real bash, completes `flowgate admin ba`
    // and `flowgate se`.
    let script = flowgate(&["completions", "bash"]);
    let dir = common::TempDir::new("completions");
    let path = dir.0.join("flowgate.bash");
    std::fs::write(&path, script).unwrap();
    let probe = format!(
        "source {}\n\
         complete_words() {{ COMP_WORDS=(\"$@\"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=();\n\
           _flowgate flowgate \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\";\n\
           echo \"${{COMPREPLY[*]}}\"; }}\n\
         complete -p flowgate\n\
         complete_words flowgate admin ba\n\
         complete_words flowgate se\n",
        path.display()
    );
    let mut bash = Command::new("bash");
    bash.arg("-c").arg(probe);
    let out = run_bounded(bash, Duration::from_secs(20));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bash failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].contains("_flowgate") && lines[0].ends_with("flowgate"),
        "{stdout}"
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["backup"],
        "{stdout}"
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["serve"],
        "{stdout}"
    );
}

#[test]
fn admin_says_when_it_creates_a_new_store_and_only_then() {
    let dir = common::TempDir::new("cli-new-store");
    let data = dir.0.join("mistyped");
    let run = || {
        let mut command = Command::new(FLOWGATE);
        command.args(["admin", "--data-dir", data.to_str().unwrap(), "status"]);
        let out = run_bounded(command, Duration::from_secs(20));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stderr).unwrap()
    };
    let first = run();
    assert!(
        first.contains("no store in") && first.contains("creating a new, empty one"),
        "{first}"
    );
    let second = run();
    assert!(!second.contains("no store in"), "{second}");
}
