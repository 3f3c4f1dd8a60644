//! Durability under fire: clients allocate Elastic IPs as fast as they can
//! while `flowgate serve` is killed with SIGKILL; after a restart every
//! allocation that was acknowledged is there (and no address is held twice).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, assert_addresses_kept, between, signed_post as call};

#[test]
fn every_acknowledged_write_survives_sigkill_mid_stream() {
    // Writes as fast as four clients can, on purpose: no request rate
    // limits (they would answer RequestLimitExceeded past the burst).
    let mut server = Server::start(
        "[api]\naddresses_per_account = 100000\n\
         write_requests_per_second = 0\nread_requests_per_second = 0\n",
    );
    server.admin(&[
        "pool",
        "add",
        "--cidr",
        "100.64.0.0/16",
        "--gateway",
        "100.64.0.1",
    ]);
    let keys = server.account("alice");
    common::wait_for_keys(server.port, &keys);
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let port = server.port;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let acknowledged = acknowledged.clone();
            let keys = keys.clone();
            std::thread::spawn(move || {
                for _ in 0..5000 {
                    match call(
                        port,
                        &keys,
                        "Action=AllocateAddress&Version=2016-11-15&Domain=vpc",
                    ) {
                        Some((200, body)) => {
                            let id = between(&body, "<allocationId>", "</allocationId>")[0].to_string();
                            acknowledged.lock().unwrap().push(id);
                        }
                        Some((status, body)) => panic!("unexpected answer {status}: {body}"),
                        None => return, // the server is gone
                    }
                }
            })
        })
        .collect();
    // Let the stream run, then kill the server in the middle of it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while acknowledged.lock().unwrap().len() < 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "too few allocations acknowledged"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    for worker in workers {
        worker.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    server.launch();
    let stored = assert_addresses_kept(port, &keys, &acknowledged, "after SIGKILL and restart");
    println!(
        "{} acknowledged, {} stored after SIGKILL and restart",
        acknowledged.len(),
        stored
    );
}
