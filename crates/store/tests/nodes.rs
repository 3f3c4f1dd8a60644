//! What only the PostgreSQL store does: several nodes on one database.
//! A commit reaches the other nodes through LISTEN/NOTIFY (measured here,
//! with polling switched off); nodes that start together migrate a new
//! database once; a store survives its server crashing and restarting.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Db, options, runtime};
use model::{AdminError, Domain, SeededEntropy, State};
use store::{MutateError, Store, StoreOptions};

fn no_polling() -> StoreOptions {
    StoreOptions {
        poll_interval: Duration::from_secs(3600),
        ..StoreOptions::default()
    }
}

async fn setup(store: &Store) -> model::AccountId {
    store
        .mutate(|s: &mut State| {
            let mut e = SeededEntropy(7);
            let (account, _) = s.create_account("alice", 0, &mut e)?;
            s.add_pool(
                "100.64.0.0/16".parse().unwrap(),
                "100.64.0.1".parse().unwrap(),
                None,
                &mut e,
            )?;
            Ok::<_, AdminError>(account.id)
        })
        .await
        .unwrap()
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

#[test]
fn a_commit_reaches_the_other_nodes_feed_within_milliseconds() {
    let db = Db::postgres();
    runtime().block_on(async {
        let a = db.open(no_polling()).await;
        let b = db.open(no_polling()).await;
        let account = setup(&a).await;
        let (_, _, mut feed) = b.subscribe();
        let mut delays = Vec::new();
        for n in 0..200u64 {
            let acc = account.clone();
            let address = a
                .mutate(move |s| {
                    let address = s.allocate_address(&acc, Domain::Vpc, 1000, &mut SeededEntropy(n))?;
                    Ok::<_, model::Ec2Error>(address)
                })
                .await
                .unwrap();
            // From the writer's acknowledgement to the other node's feed.
            let acknowledged = Instant::now();
            let target = a.revision();
            loop {
                let event = tokio::time::timeout(Duration::from_secs(5), feed.recv())
                    .await
                    .expect("node B heard nothing within 5 s (polling is off)")
                    .unwrap();
                if event.revision >= target {
                    assert!(
                        event
                            .changes
                            .iter()
                            .any(|c| c.id == address.allocation_id.as_str())
                    );
                    break;
                }
            }
            delays.push(acknowledged.elapsed());
        }
        delays.sort();
        let (p50, p99, max) = (
            percentile(&delays, 0.5),
            percentile(&delays, 0.99),
            delays[delays.len() - 1],
        );
        println!(
            "propagation A -> B over {} commits: p50 {p50:?}, p99 {p99:?}, max {max:?}",
            delays.len()
        );
        assert!(p99 < Duration::from_millis(250), "p99 {p99:?}");
        assert_eq!(a.read().objects(), b.read().objects());
    });
}

#[test]
fn nodes_starting_together_migrate_a_new_database_once() {
    let db = Db::postgres();
    runtime().block_on(async {
        let location = db.location();
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let location = location.clone();
                tokio::spawn(async move { Store::open(&location, options()).await })
            })
            .collect();
        let mut stores = Vec::new();
        for open in opens {
            stores.push(open.await.unwrap().unwrap());
        }
        let account = setup(&stores[0]).await;
        for store in &stores {
            store.sync().await.unwrap();
            assert!(store.read().tenant(&account).is_some());
        }
    });
    let migrations = db
        .server()
        .psql("postgres", "SELECT COUNT(*) FROM schema_migrations")
        .unwrap();
    assert_eq!(migrations.trim(), "1");
}

#[test]
fn a_store_reconnects_after_its_server_crashes_and_keeps_what_was_acknowledged() {
    let mut db = Db::postgres();
    let rt = runtime();
    let (a, b, account) = rt.block_on(async {
        let a = db.open(no_polling()).await;
        let b = db.open(no_polling()).await;
        let account = setup(&a).await;
        for n in 0..10u64 {
            let acc = account.clone();
            a.mutate(move |s| s.allocate_address(&acc, Domain::Vpc, 1000, &mut SeededEntropy(n)))
                .await
                .unwrap();
        }
        (a, b, account)
    });
    let acknowledged = a_objects(&a);
    match &mut db {
        Db::Postgres(server) => server.restart().unwrap(),
        Db::Sqlite(_) => unreachable!(),
    }
    rt.block_on(async {
        // The first write after the crash may fail (its connection is
        // gone; nothing of it is kept); the store reconnects for the next.
        let deadline = Instant::now() + Duration::from_secs(20);
        let address = loop {
            let acc = account.clone();
            match a
                .mutate(move |s| s.allocate_address(&acc, Domain::Vpc, 1000, &mut SeededEntropy(99)))
                .await
            {
                Ok(address) => break address,
                Err(MutateError::Storage(err)) => {
                    assert!(Instant::now() < deadline, "never reconnected: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(MutateError::Rejected(err)) => panic!("refused: {err}"),
            }
        };
        // B's listener reconnected too: it hears A's commit with polling off.
        let deadline = Instant::now() + Duration::from_secs(10);
        while b.read().public_ip_holder(address.public_ip).is_none() {
            assert!(Instant::now() < deadline, "node B never heard of the commit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let reopened = db.open(options()).await;
        let now = reopened.read().objects();
        for object in &acknowledged {
            assert!(now.contains(object), "lost {object:?}");
        }
        assert_eq!(reopened.read().tenant(&account).unwrap().addresses.len(), 11);
    });
    drop(rt);
}

fn a_objects(store: &Store) -> Vec<model::Object> {
    store.read().objects()
}
