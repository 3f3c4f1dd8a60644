//! Back-pressure at the API's door, through the real `flowgate serve`:
//! per-account token buckets for mutating and other requests answer
//! `RequestLimitExceeded` (HTTP 503, EC2's XML) as boto3 and the AWS CLI
//! expect it (tests/clients/limits.py), and beyond
//! `api.max_requests_in_progress` requests are turned away with
//! `Unavailable` until one in progress finishes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{Server, free_port, scrape_metrics, signed_post};
use testbed::wait_until;

const DESCRIBE: &str = "Action=DescribeAddresses&Version=2016-11-15";

#[test]
fn bursts_beyond_an_accounts_bucket_get_request_limit_exceeded() {
    // Buckets that refill one token every ~17 minutes: within the test,
    // exactly the burst passes, whatever the machine's speed.
    let mut server = Server::prepare(
        "[api]\naddresses_per_account = 100\n\
         write_requests_per_second = 0.001\nwrite_request_burst = 4\n\
         read_requests_per_second = 0.001\nread_request_burst = 6\n",
    );
    server.admin(&[
        "pool",
        "add",
        "--cidr",
        common::POOL_CIDR,
        "--gateway",
        "203.0.113.1",
    ]);
    // Made before serve starts, so that no request is spent waiting for
    // the server to see them.
    let alice = server.account("alice");
    let bob = server.account("bob");
    server.launch();
    server.client_env_ok(
        "limits.py",
        &[("A", &alice), ("B", &bob)],
        "ami-00000000",
        &[
            ("FLOWGATE_WRITE_BURST", "4".into()),
            ("FLOWGATE_READ_BURST", "6".into()),
        ],
        Duration::from_secs(120),
    );
}

#[test]
fn requests_beyond_the_bound_in_progress_get_unavailable_until_one_finishes() {
    let metrics = free_port();
    let mut server = Server::prepare(&format!(
        "[api]\nmax_requests_in_progress = 1\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"
    ));
    let alice = server.account("alice");
    server.launch();
    let call = || {
        signed_post(server.port, &alice, DESCRIBE)
            .unwrap_or_else(|| panic!("the server did not answer:\n{}", server.log()))
    };
    assert_eq!(call().0, 200, "one request at a time passes");

    // A request whose body never comes stays in progress and holds the
    // only place. No other request is made until the server says it holds
    // it: one arriving first would take the place and turn it away.
    let mut held = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    held.write_all(
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nAction=",
    )
    .unwrap();
    let holding = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        scrape_metrics(metrics).is_some_and(|text| {
            text.lines()
                .any(|line| line == "flowgate_api_requests_in_progress 1")
        })
    });
    assert!(
        holding.is_ok(),
        "the held request never took the place:\n{}",
        server.log()
    );
    let (status, body) = call();
    assert_eq!(status, 503, "turned away while the place is held: {body}");
    assert!(
        body.contains("<Code>Unavailable</Code>") && body.contains("<RequestID>"),
        "EC2's XML: {body}"
    );

    // The held request ends with its connection; its place is free again.
    drop(held);
    let freed = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        call().0 == 200
    });
    assert!(freed.is_ok(), "the place was never freed:\n{}", server.log());
}
