//! Durability under fire: clients allocate Elastic IPs as fast as they can
//! while `flowgate serve` is killed with SIGKILL; after a restart every
//! allocation that was acknowledged is there (and no address is held twice).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Keys, Server};

/// One SigV4-signed POST over a fresh connection; (status, body) or None if the server is gone.
fn call(port: u16, keys: &Keys, body: &str) -> Option<(u16, String)> {
    let host = format!("127.0.0.1:{port}");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let headers = ec2api::auth::sign_v4_post(
        &host,
        body.as_bytes(),
        &keys.access_key_id,
        &keys.secret_access_key,
        "flowgate-1",
        &ec2api::auth::format_amz_date(now),
    );
    let mut stream = TcpStream::connect(&host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut request = String::from("POST / HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    text.split(open)
        .skip(1)
        .filter_map(|rest| rest.split(close).next())
        .collect()
}

#[test]
fn every_acknowledged_write_survives_sigkill_mid_stream() {
    let mut server = Server::start("[api]\naddresses_per_account = 100000\n");
    server.admin(&[
        "pool",
        "add",
        "--cidr",
        "100.64.0.0/16",
        "--gateway",
        "100.64.0.1",
    ]);
    let keys = server.account("alice");
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
    let (status, body) = call(port, &keys, "Action=DescribeAddresses&Version=2016-11-15").unwrap();
    assert_eq!(status, 200, "{body}");
    let stored: HashSet<&str> = between(&body, "<allocationId>", "</allocationId>")
        .into_iter()
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged allocations lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
    let ips = between(&body, "<publicIp>", "</publicIp>");
    assert_eq!(
        ips.len(),
        ips.iter().collect::<HashSet<_>>().len(),
        "an address is held twice"
    );
    println!(
        "{} acknowledged, {} stored after SIGKILL and restart",
        acknowledged.len(),
        stored.len()
    );
}
