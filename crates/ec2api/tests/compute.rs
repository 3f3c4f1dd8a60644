//! The compute reconciler with a driver that records what it is asked:
//! pending instances are launched and become running, terminated ones are
//! torn down, a driver that reports an instance gone makes it terminated,
//! and work left over from before a restart is picked up.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ec2api::compute::{ComputeDriver, DriverFuture, ObserveFuture, reconcile};
use model::{AccountId, Ec2Error, Instance, InstanceId, InstanceState, LaunchRequest, SeededEntropy, State};
use store::{Store, StoreOptions};

#[derive(Default)]
struct Recorder {
    launched: Mutex<Vec<InstanceId>>,
    terminated: Mutex<Vec<InstanceId>>,
    vanished: Mutex<Vec<InstanceId>>,
}

impl ComputeDriver for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn launch<'a>(&'a self, instance: &'a Instance) -> DriverFuture<'a> {
        self.launched.lock().unwrap().push(instance.id.clone());
        Box::pin(async { Ok(()) })
    }
    fn terminate<'a>(&'a self, instance: &'a Instance) -> DriverFuture<'a> {
        self.terminated.lock().unwrap().push(instance.id.clone());
        Box::pin(async { Ok(()) })
    }
    fn observe<'a>(&'a self, instance: &'a Instance) -> ObserveFuture<'a> {
        let gone = self.vanished.lock().unwrap().contains(&instance.id);
        Box::pin(async move { gone.then_some(InstanceState::Terminated) })
    }
}

async fn wait_for(store: &Store, id: &InstanceId, state: InstanceState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = store.read().get(model::Kind::Instance, id.as_str());
        if let Some(model::Object::Instance(i)) = now
            && i.state == state
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never became {}",
            state.name()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn launch(store: &Store, account: &AccountId, count: u32) -> Vec<InstanceId> {
    let a = account.clone();
    store
        .mutate(move |s: &mut State| {
            let request = LaunchRequest {
                image_id: s.images().next().unwrap().id.clone(),
                instance_type: "m1.small".into(),
                min_count: 1,
                max_count: count,
                groups: vec![],
                subnet_id: None,
                private_ip: None,
                user_data: None,
                key_name: None,
                client_token: None,
                availability_zone: "z".into(),
            };
            s.run_instances(&a, &request, 0, &mut SeededEntropy(count.into()))
        })
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_follow_the_driver() {
    let dir = std::env::temp_dir().join(format!("flowgate-compute-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = StoreOptions {
        poll_interval: Duration::from_millis(20),
        ..StoreOptions::default()
    };
    let store = Store::open_sqlite(&dir, options.clone()).await.unwrap();
    let account = store
        .mutate(|s: &mut State| {
            let mut e = SeededEntropy(1);
            let (account, _) = s.create_account("alice", 0, &mut e).unwrap();
            s.add_network(
                "10.0.0.0/24".parse().unwrap(),
                "10.0.0.1".parse().unwrap(),
                None,
                &mut e,
            )
            .unwrap();
            s.add_image("img", "", &mut e).unwrap();
            Ok::<_, Ec2Error>(account.id)
        })
        .await
        .unwrap();

    // Launched before any reconciler runs (as after a restart): picked up at start.
    let early = launch(&store, &account, 1).await;
    let driver = Arc::new(Recorder::default());
    let task = tokio::spawn(reconcile(
        store.clone(),
        driver.clone(),
        Duration::from_secs(3600),
        Duration::from_millis(50),
    ));
    wait_for(&store, &early[0], InstanceState::Running).await;

    let ids = launch(&store, &account, 3).await;
    for id in &ids {
        wait_for(&store, id, InstanceState::Running).await;
    }
    assert_eq!(driver.launched.lock().unwrap().len(), 4);

    let a = account.clone();
    let doomed = ids[0].clone();
    store
        .mutate(move |s: &mut State| s.terminate_instances(&a, &[doomed]))
        .await
        .unwrap();
    wait_for(&store, &ids[0], InstanceState::Terminated).await;
    assert_eq!(driver.terminated.lock().unwrap().as_slice(), &ids[..1]);

    // The driver sees a VM vanish: the record follows.
    driver.vanished.lock().unwrap().push(ids[1].clone());
    wait_for(&store, &ids[1], InstanceState::Terminated).await;
    assert!(store.read().tenant(&account).unwrap().instances[&ids[2]].state == InstanceState::Running);
    task.abort();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
