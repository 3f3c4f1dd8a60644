//! The PostgreSQL store over TLS: a server that takes TCP connections only
//! over TLS (pgtest), reached with `sslmode=verify-full` and the server's
//! CA in the store URL. Every connection a node makes (the writer's, the
//! LISTEN feed's, the election's) goes through it; a URL without TLS, or
//! trusting another CA, is refused with a clear error.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{account_with_pool, event_reaching, options, runtime};
use model::{Domain, SeededEntropy};
use store::election::{self, ElectionOptions, Leadership};
use store::{Store, StoreLocation, StoreOptions};

#[test]
fn nodes_reach_a_postgres_server_over_verified_tls_only() {
    let server = pgtest::Postgres::start_tls().unwrap();
    let verified = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        server.tcp_url(),
        server.tls_ca().display()
    );
    let rt = runtime();
    rt.block_on(async {
        let location = StoreLocation::Postgres(verified.clone());
        let a = Store::open(&location, options()).await.unwrap();
        // Polling off: B hears of A's commit through LISTEN/NOTIFY only.
        let b = Store::open(
            &location,
            StoreOptions {
                poll_interval: Duration::from_secs(3600),
                ..options()
            },
        )
        .await
        .unwrap();
        let (_, _, mut feed) = b.subscribe();
        let account = account_with_pool(&a, "100.64.0.0/16", "100.64.0.1").await;
        let acc = account.clone();
        let address = a
            .mutate(move |s| s.allocate_address(&acc, Domain::Vpc, 1000, &mut SeededEntropy(1)))
            .await
            .unwrap();
        event_reaching(&mut feed, a.revision()).await;
        assert_eq!(b.read().objects(), a.read().objects(), "B holds what A wrote");
        assert!(
            format!("{:?}", b.read().objects()).contains(address.allocation_id.as_str()),
            "B lists A's address"
        );

        // The election's own session goes through TLS too.
        let mut view = election::start(&verified, "tls-node", ElectionOptions::default()).unwrap();
        let led = tokio::time::timeout(
            Duration::from_secs(30),
            view.wait_for(|v| matches!(v, Leadership::Leader { .. })),
        )
        .await
        .is_ok();
        assert!(led, "the only node was never elected over TLS");
        let (_, leader, _) = election::current(&verified).await.unwrap();
        assert_eq!(leader, "tls-node");

        // The server's view of its TCP clients (A's and B's connections,
        // the election's): every one encrypted.
        let clients = server
            .psql(
                "postgres",
                "SELECT COUNT(*) FILTER (WHERE ssl), COUNT(*) FILTER (WHERE NOT ssl) \
                 FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE client_addr IS NOT NULL",
            )
            .unwrap();
        let (encrypted, plain) = clients.trim().split_once('|').unwrap();
        assert!(encrypted.parse::<u32>().unwrap() >= 3, "TLS clients: {clients}");
        assert_eq!(plain, "0", "TCP clients without TLS: {clients}");
        drop((a, b, view));
    });
    // Without TLS, the server refuses; trusting only the public CAs (no
    // sslrootcert), the store refuses the server's certificate.
    for (url, expected) in [
        (format!("{}?sslmode=disable", server.tcp_url()), "no encryption"),
        (format!("{}?sslmode=verify-full", server.tcp_url()), "certificate"),
    ] {
        let refused = rt.block_on(Store::open(&StoreLocation::Postgres(url.clone()), options()));
        let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
        println!("{url}: {error}");
        assert!(
            error.contains(expected),
            "{url}: expected an error naming {expected:?}, got {error:?}"
        );
    }
}
