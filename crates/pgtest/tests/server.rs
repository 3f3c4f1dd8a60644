//! A private server starts, answers, survives a crash-restart with its
//! data, and leaves nothing behind when dropped.
#![allow(clippy::unwrap_used)]

use pgtest::Postgres;

#[test]
fn a_private_server_answers_restarts_and_leaves_nothing_behind() {
    let mut server = Postgres::start().unwrap();
    let dir = server.dir().to_path_buf();
    let pid = server.pid().unwrap();
    assert!(server.url().contains(&*server.socket_dir().to_string_lossy()));
    server
        .psql(
            "postgres",
            "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (42)",
        )
        .unwrap();
    server.restart().unwrap();
    assert_ne!(server.pid().unwrap(), pid);
    assert_eq!(server.psql("postgres", "SELECT x FROM t").unwrap().trim(), "42");
    let pid = server.pid().unwrap();
    drop(server);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the server {pid} still runs"
    );
}
