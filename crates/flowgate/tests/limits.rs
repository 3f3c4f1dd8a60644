//! Back-pressure at the API's door, through the real `flowgate serve`:
//! per-account token buckets for mutating and other requests answer
//! `RequestLimitExceeded` (HTTP 503, EC2's XML) as boto3 and the AWS CLI
//! expect it (tests/clients/limits.py), and beyond
//! `api.max_requests_in_progress` requests are turned away with
//! `Unavailable` until one in progress finishes. Connections that do not
//! send their headers in time are closed, and beyond
//! `api.max_connections` new ones wait until one closes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Keys, Server, free_port, read_answer, scrape_metric, signed_post, signed_request};
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
    server.add_pool();
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

/// A server with `api_settings` in its `[api]` section and metrics on a
/// port of its own, and an account made before it started: (server,
/// account, metrics port).
fn serving_with_metrics(api_settings: &str) -> (Server, Keys, u16) {
    let metrics = free_port();
    let mut server = Server::prepare(&format!(
        "[api]\n{api_settings}\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"
    ));
    let alice = server.account("alice");
    server.launch();
    (server, alice, metrics)
}

#[test]
fn requests_beyond_the_bound_in_progress_get_unavailable_until_one_finishes() {
    let (server, alice, metrics) = serving_with_metrics("max_requests_in_progress = 1");
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
        scrape_metric(metrics, "flowgate_api_requests_in_progress").as_deref() == Some("1")
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

/// Whether the server closed `stream`: a read finds its end (or a reset)
/// within `limit`, rather than waiting.
fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // An answer (hyper says nothing when it times a client out,
            // but another server might): read on to the end.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn connections_that_do_not_send_their_headers_in_time_are_closed() {
    let (server, alice, metrics) = serving_with_metrics("header_timeout_seconds = 1");

    // One connects and sends nothing; one sends half its headers and
    // stops; one trickles its headers a byte every 200 ms, which must not
    // move the deadline. Without a deadline, each would hold its socket
    // for ever (the test gives each 30 s).
    let mut silent = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let mut halted = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    halted
        .write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let trickler = std::thread::spawn({
        let port = server.port;
        move || {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let header = b"POST / HTTP/1.1\r\nX-Slow: ";
            stream.write_all(header).unwrap();
            // 150 bytes at 200 ms: 30 s of headers, 30 times the deadline.
            for _ in 0..150 {
                std::thread::sleep(Duration::from_millis(200));
                if stream.write_all(b"a").is_err() {
                    return true;
                }
                if closed_by_server(&mut stream, Duration::from_millis(1)) {
                    return true;
                }
            }
            false
        }
    });
    assert!(
        closed_by_server(&mut silent, Duration::from_secs(30)),
        "a connection that sent nothing was left open:\n{}",
        server.log()
    );
    assert!(
        closed_by_server(&mut halted, Duration::from_secs(30)),
        "a connection that stopped in its headers was left open:\n{}",
        server.log()
    );
    assert!(
        trickler.join().unwrap(),
        "a connection trickling its headers was left open for 30 s:\n{}",
        server.log()
    );
    assert_eq!(
        scrape_metric(metrics, "flowgate_api_header_timeouts_total").as_deref(),
        Some("3"),
        "each is counted"
    );
    // The server answers whoever sends a request in time.
    let (status, body) = signed_post(server.port, &alice, DESCRIBE).expect("an answer");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn beyond_the_bound_on_connections_new_ones_wait_until_one_closes() {
    let (server, alice, metrics) = serving_with_metrics("max_connections = 1");

    // The only place, held by a connection in the middle of its headers
    // (closed only after the default 30 s).
    let mut held = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    held.write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
    let holding = testbed::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        scrape_metric(metrics, "flowgate_api_connections_open").as_deref() == Some("1")
    });
    assert!(
        holding.is_ok(),
        "the held connection was never served:\n{}",
        server.log()
    );

    // A whole request on a second connection waits in the backlog: no
    // answer while the place is held ...
    let mut waiting = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    waiting
        .write_all(signed_request(server.port, &alice, DESCRIBE).as_bytes())
        .unwrap();
    waiting.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut early = [0u8; 64];
    let answered_early = waiting.read(&mut early);
    assert!(
        answered_early.is_err(),
        "answered beyond the bound on connections: {answered_early:?}"
    );
    // ... and it is answered, not lost, once the place is free.
    drop(held);
    waiting.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (status, body) = read_answer(&mut waiting).expect("the waiting request is answered");
    assert_eq!(status, 200, "{body}");
}
