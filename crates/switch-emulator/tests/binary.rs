//! The `flowgate-switch-emulator` command: its switches reach a controller,
//! it prints summaries while running, and on Ctrl-C (SIGINT) it stops with
//! a final summary and success.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::Controller;
use openflow::{FlowMod, Message, Version};
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_flowgate-switch-emulator");

#[test]
fn help_explains_the_options() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for word in [
        "--controller",
        "--switches",
        "--ports",
        "--dpid-base",
        "--stats-interval",
        "--drop-after",
    ] {
        assert!(text.contains(word), "{word} missing from --help:\n{text}");
    }
    let bad = Command::new(BIN)
        .args(["--controller", "nowhere"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[tokio::test]
async fn runs_until_interrupted_and_prints_summaries() {
    let ctl = Controller::bind().await;
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "--controller",
            &ctl.target().to_string(),
            "--switches",
            "3",
            "--dpid-base",
            "0x10",
            "--stats-interval",
            "100ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut dpids = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut c = ctl.accept(&[Version::OF13]).await;
        dpids.push(c.features().await.datapath_id);
        c.send(Message::FlowMod(FlowMod::delete_all())).await;
        assert!(c.barrier().await.is_empty());
        conns.push(c);
    }
    dpids.sort_unstable();
    assert_eq!(dpids, vec![0x10, 0x11, 0x12]);

    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let stats = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = lines.next_line().await.unwrap().expect("a summary line");
            if line.starts_with("stats ") && line.contains("delete=3") {
                return line;
            }
        }
    })
    .await
    .expect("a summary within 10 s");
    assert!(stats.contains("switches=3 connected=3"), "{stats}");

    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let fin = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = lines.next_line().await.unwrap().expect("a final line");
            if line.starts_with("final ") {
                return line;
            }
        }
    })
    .await
    .expect("a final summary");
    assert!(fin.contains("barriers=3"), "{fin}");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
