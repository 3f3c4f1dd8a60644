//! Backup and restore with the real `flowgate serve` and `flowgate admin`:
//! a backup taken while clients keep writing, restored into a fresh data
//! directory, gives a server that answers with everything acknowledged
//! before the backup started; a restore is refused while serve runs, and
//! files that are not whole flowgate stores are refused with the data
//! directory left as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, TempDir, assert_addresses_kept, between, signed_post};

/// Every file of `dir` with its bytes, sorted by name.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Waits (bounded) until `count` says at least `n`.
fn wait_for(what: &str, n: usize, count: impl Fn() -> usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count() < n {
        assert!(Instant::now() < deadline, "{what}: fewer than {n} within 30 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_backup_taken_while_serve_writes_restores_everything_acknowledged_before_it() {
    // Bob writes as fast as two clients can, on purpose: no request rate
    // limits (they would answer RequestLimitExceeded past the burst).
    let config = "[api]\naddresses_per_account = 100000\n\
                  write_requests_per_second = 0\nread_requests_per_second = 0\n";
    let mut server = Server::start(config);
    server.admin(&[
        "pool",
        "add",
        "--cidr",
        "100.64.0.0/16",
        "--gateway",
        "100.64.0.1",
    ]);
    let alice = server.account("alice");
    let bob = server.account("bob");
    common::wait_for_keys(server.port, &bob);
    let image = server.image("debian-12");
    // Alice's groups, rules, instances, addresses and tags, as boto3 saw them.
    let state = server.dir.0.join("acknowledged.json");
    let state = state.to_str().unwrap();
    server.client_ok("restart.py", &["populate", state], &[("A", &alice)], &image);

    // Bob allocates Elastic IPs as fast as two clients can, throughout.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let port = server.port;
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (acknowledged, stop, keys) = (acknowledged.clone(), stop.clone(), bob.clone());
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let body = "Action=AllocateAddress&Version=2016-11-15&Domain=vpc";
                    match signed_post(port, &keys, body) {
                        Some((200, body)) => {
                            let id = between(&body, "<allocationId>", "</allocationId>")[0];
                            acknowledged.lock().unwrap().push(id.to_string());
                        }
                        other => panic!("AllocateAddress answered {other:?}"),
                    }
                }
            })
        })
        .collect();
    let count = || acknowledged.lock().unwrap().len();
    wait_for("allocations before the backup", 100, count);
    let before: Vec<String> = acknowledged.lock().unwrap().clone();

    let copies = TempDir::new("backups");
    let file = copies.0.join("flowgate-backup.db");
    let file = file.to_str().unwrap();
    let out = server.admin(&["backup", file, "--json"]);
    assert!(out.contains("\"revision\":"), "{out}");
    // The writes went on during the backup and after it.
    let after_backup = count();
    wait_for("allocations after the backup", after_backup + 50, count);
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.join().unwrap();
    }

    // A restore under the running server is refused and changes nothing.
    let refused = server.admin_output(&["restore", file]);
    assert!(
        !refused.status.success(),
        "a restore under a running serve went through"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("stop it first"), "{stderr}");
    let names: Vec<String> = snapshot(&server.data_dir()).into_iter().map(|(n, _)| n).collect();
    assert!(
        !names.iter().any(|n| n.contains("restor")),
        "a refused restore left {names:?}"
    );
    server.kill();

    // Restored into a fresh data directory, a new server has it all.
    let mut restored = Server::prepare(config);
    let out = restored.admin(&["restore", file, "--json"]);
    assert!(out.contains("\"previous\":null"), "{out}");
    restored.launch();
    restored.client_ok("restart.py", &["verify", state], &[("A", &alice)], &image);
    let stored = assert_addresses_kept(restored.port, &bob, &before, "acknowledged before the backup");
    // The restored store takes writes.
    let (status, body) = signed_post(
        restored.port,
        &bob,
        "Action=AllocateAddress&Version=2016-11-15&Domain=vpc",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    println!(
        "{} acknowledged before the backup, {} in the restored store, {} acknowledged in all",
        before.len(),
        stored,
        acknowledged.lock().unwrap().len()
    );
}

#[test]
fn restore_refuses_a_foreign_or_truncated_file_and_changes_nothing() {
    let mut server = Server::start("");
    server.account("alice");
    let copies = TempDir::new("backups");
    let good = copies.0.join("good.db");
    server.admin(&["backup", good.to_str().unwrap()]);
    server.kill();
    let data = server.data_dir();
    let before = snapshot(&data);

    let truncated = copies.0.join("truncated.db");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let cases = [
        (
            server.config.clone(),
            "is not a flowgate backup: it is not an SQLite database",
        ),
        (truncated, "is truncated"),
    ];
    for (file, words) in cases {
        let out = server.admin_output(&["restore", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} was restored", file.display());
        assert!(stderr.contains(words), "{}: {stderr}", file.display());
        assert_eq!(
            snapshot(&data),
            before,
            "{} changed the data directory",
            file.display()
        );
    }
    // The server still starts on what it had.
    server.launch();
    let accounts = server.admin(&["account", "list", "--json"]);
    assert!(accounts.contains("\"alice\""), "{accounts}");
}
