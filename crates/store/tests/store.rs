//! The store against a real SQLite file: durability across reopen, group
//! commit under concurrency, rollback of refused operations, the change
//! feed, and changes made by another process (as `flowgate admin` does).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use model::{AccountId, AdminError, Domain, Ec2Error, SeededEntropy, State};
use store::{MutateError, Store, StoreOptions};

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "flowgate-store-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        poll_interval: Duration::from_millis(20),
        ..StoreOptions::default()
    }
}

async fn setup(store: &Store) -> AccountId {
    store
        .mutate(|s: &mut State| {
            let mut e = SeededEntropy(42);
            let (account, _) = s.create_account("alice", 0, &mut e)?;
            s.add_pool(
                "198.51.100.0/24".parse().unwrap(),
                "198.51.100.1".parse().unwrap(),
                None,
                &mut e,
            )?;
            Ok::<_, AdminError>(account.id)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn committed_changes_survive_reopening() {
    let dir = TempDir::new();
    let store = Store::open_sqlite(&dir.0, options()).await.unwrap();
    let account = setup(&store).await;
    let a = account.clone();
    let address = store
        .mutate(move |s| s.allocate_address(&a, Domain::Vpc, 5, &mut SeededEntropy(1)))
        .await
        .unwrap();
    let before = store.read().objects();
    drop(store);
    let reopened = Store::open_sqlite(&dir.0, options()).await.unwrap();
    assert_eq!(reopened.read().objects(), before);
    assert!(reopened.read().public_ip_holder(address.public_ip).is_some());
    assert!(reopened.revision() >= 2);
}

#[tokio::test]
async fn refused_operations_leave_nothing_behind() {
    let dir = TempDir::new();
    let store = Store::open_sqlite(&dir.0, options()).await.unwrap();
    let account = setup(&store).await;
    let before = store.read().objects();
    let revision = store.revision();
    let a = account.clone();
    let err = store
        .mutate(move |s| {
            // Changes something, then fails: the partial change must vanish.
            s.allocate_address(&a, Domain::Vpc, 5, &mut SeededEntropy(1))?;
            Err::<(), _>(Ec2Error::AddressLimitExceeded)
        })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        MutateError::Rejected(Ec2Error::AddressLimitExceeded)
    ));
    assert_eq!(store.read().objects(), before);
    assert_eq!(store.revision(), revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mutations_are_group_committed_and_all_durable() {
    let dir = TempDir::new();
    let store = Store::open_sqlite(&dir.0, options()).await.unwrap();
    let account = setup(&store).await;
    let start = store.revision();
    let mut tasks = Vec::new();
    for n in 0..64u64 {
        let store = store.clone();
        let a = account.clone();
        tasks.push(tokio::spawn(async move {
            store
                .mutate(move |s| s.allocate_address(&a, Domain::Vpc, 1000, &mut SeededEntropy(n)))
                .await
        }));
    }
    let mut ips = std::collections::HashSet::new();
    for task in tasks {
        ips.insert(task.await.unwrap().unwrap().public_ip);
    }
    assert_eq!(ips.len(), 64, "every allocation got its own address");
    let transactions = store.revision() - start;
    assert!(transactions <= 64, "{transactions} transactions for 64 mutations");
    drop(store);
    let reopened = Store::open_sqlite(&dir.0, options()).await.unwrap();
    assert_eq!(reopened.read().tenant(&account).unwrap().addresses.len(), 64);
}

#[tokio::test]
async fn the_feed_carries_every_committed_change_in_revision_order() {
    let dir = TempDir::new();
    let store = Store::open_sqlite(&dir.0, options()).await.unwrap();
    let account = setup(&store).await;
    let (mut replica, revision, mut feed) = store.subscribe();
    for n in 0..5 {
        let a = account.clone();
        store
            .mutate(move |s| s.allocate_address(&a, Domain::Standard, 10, &mut SeededEntropy(n)))
            .await
            .unwrap();
    }
    let a = account.clone();
    store
        .mutate(move |s| s.create_security_group(&a, "web", "web", &mut SeededEntropy(9)))
        .await
        .unwrap();
    let mut last = revision;
    while last < store.revision() {
        let event = tokio::time::timeout(Duration::from_secs(5), feed.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(event.revision > last);
        last = event.revision;
        for change in event.changes.iter() {
            replica.apply(change);
        }
    }
    assert_eq!(replica.objects(), store.read().objects());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_by_another_process_are_seen_without_restart() {
    let dir = TempDir::new();
    let serve = Store::open_sqlite(&dir.0, options()).await.unwrap();
    let account = setup(&serve).await;
    let (_, _, mut feed) = serve.subscribe();

    // A second store on the same file stands for `flowgate admin`.
    let admin = Store::open_sqlite(&dir.0, options()).await.unwrap();
    let image = admin
        .mutate(|s| s.add_image("debian-12", "", &mut SeededEntropy(5)))
        .await
        .unwrap();
    drop(admin);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while serve.read().image(&image.id).is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve never saw the image"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let event = tokio::time::timeout(Duration::from_secs(5), feed.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(event.changes.iter().any(|c| c.id == image.id.as_str()));

    // And serve's own writes interleave correctly with the other process's.
    let a = account.clone();
    serve
        .mutate(move |s| s.allocate_address(&a, Domain::Vpc, 5, &mut SeededEntropy(3)))
        .await
        .unwrap();
    let admin = Store::open_sqlite(&dir.0, options()).await.unwrap();
    assert_eq!(admin.read().objects(), serve.read().objects());
}
