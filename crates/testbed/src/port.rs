//! Ports on the loopback for servers a test starts.

use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;

/// The first port [`free_port`] hands out.
const FIRST: u16 = 20000;
/// How many ports it chooses from: 20000-31999, below the kernel's
/// ephemeral range (32768 and up on Debian).
const COUNT: u64 = 12000;

/// A TCP port of 127.0.0.1 that nothing listens on now, for a server that
/// another process will start. It is chosen below the ephemeral range: a
/// port from that range can become the source port of any client
/// connection on the machine (the tests running beside this one make
/// thousands) between the moment it is chosen and the moment the server
/// binds it, which then fails. Random, so that tests running at once
/// rarely try the same ones.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        // RandomState is seeded afresh for each call.
        let random = std::hash::RandomState::new().build_hasher().finish();
        let port = FIRST + (random % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", u64::from(FIRST) + COUNT);
}
