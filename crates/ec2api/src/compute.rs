//! Compute drivers: what makes an instance record real. The reconciler
//! follows the store's change feed and asks the driver to launch
//! `pending` instances and tear down `shutting-down` ones, then records the
//! outcome (`running`, `terminated`) through the store, as EC2's state
//! machine goes. Step 4 adds drivers that start namespaces or bind the
//! ports of externally managed VMs; the default driver here keeps records only.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use model::{Ec2Error, Instance, InstanceId, InstanceState, Object, State};
use store::Store;
use tokio::sync::broadcast::error::RecvError;

/// A boxed future, so drivers can be trait objects.
pub type DriverFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// A boxed future of what a driver observed.
pub type ObserveFuture<'a> = Pin<Box<dyn Future<Output = Option<InstanceState>> + Send + 'a>>;

/// A boxed future of an instance's console output.
pub type ConsoleFuture<'a> = Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>>;

/// Launches, terminates and watches instances somewhere.
pub trait ComputeDriver: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// Makes the instance exist; `Ok` moves it to `running`.
    fn launch<'a>(&'a self, instance: &'a Instance) -> DriverFuture<'a>;
    /// Makes it go away; `Ok` moves it to `terminated`.
    fn terminate<'a>(&'a self, instance: &'a Instance) -> DriverFuture<'a>;
    /// What the instance really is now, when the driver knows better than
    /// the record (a VM that vanished, a port that was unplugged); `None`
    /// when it has nothing to add. Asked periodically for running instances.
    fn observe<'a>(&'a self, _instance: &'a Instance) -> ObserveFuture<'a> {
        Box::pin(async { None })
    }
    /// Whether a launched instance stays `pending` until something else
    /// (the data plane, once its port is bound on the switch) records it
    /// `running`.
    fn awaits_binding(&self, _instance: &Instance) -> bool {
        false
    }
    /// What the instance printed on its console, for GetConsoleOutput.
    fn console_output<'a>(&'a self, _instance: &'a Instance) -> ConsoleFuture<'a> {
        Box::pin(async { None })
    }
}

/// How often `serve` observes running instances.
pub const OBSERVE_INTERVAL: Duration = Duration::from_secs(10);

/// The default driver: instances are records that go `pending` -> `running`
/// and `shutting-down` -> `terminated` at once.
pub struct RecordsOnly;

impl ComputeDriver for RecordsOnly {
    fn name(&self) -> &'static str {
        "records"
    }

    fn launch<'a>(&'a self, _instance: &'a Instance) -> DriverFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn terminate<'a>(&'a self, _instance: &'a Instance) -> DriverFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// Runs the reconciler until the store shuts down: drives instances along
/// their life cycle, asks the driver about running ones every
/// `observe_interval`, and forgets terminated ones after `retention`.
pub async fn reconcile(
    store: Store,
    driver: Arc<dyn ComputeDriver>,
    retention: Duration,
    observe_interval: Duration,
) {
    let mut purge = tokio::time::interval(Duration::from_secs(60).min(retention.max(Duration::from_secs(1))));
    let mut observe = tokio::time::interval(observe_interval);
    'subscribe: loop {
        let (snapshot, _, mut feed) = store.subscribe();
        for instance in instances_needing_work(&snapshot) {
            act(&store, &driver, instance);
        }
        loop {
            tokio::select! {
                event = feed.recv() => match event {
                    Ok(event) => {
                        for change in event.changes.iter() {
                            if let Some(Object::Instance(after)) = &change.after {
                                let before_state = match &change.before {
                                    Some(Object::Instance(before)) => Some(before.state),
                                    _ => None,
                                };
                                if before_state != Some(after.state) && needs_work(after.state) {
                                    act(&store, &driver, after.clone());
                                }
                            }
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "compute reconciler fell behind; rescanning");
                        continue 'subscribe;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = observe.tick() => observe_running(&store, &driver),
                _ = purge.tick() => {
                    let cutoff = crate::actions::now_ms().saturating_sub(retention.as_millis() as u64);
                    let result = store
                        .mutate(move |state: &mut State| Ok::<_, Ec2Error>(state.purge_terminated(cutoff)))
                        .await;
                    match result {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(forgotten = n, "terminated instances forgotten"),
                        Err(err) => tracing::warn!(error = %err, "cannot forget terminated instances"),
                    }
                }
            }
        }
    }
}

/// Asks the driver about every running instance and records what changed.
fn observe_running(store: &Store, driver: &Arc<dyn ComputeDriver>) {
    let running: Vec<Instance> = store
        .read()
        .tenants()
        .flat_map(|t| t.instances.values())
        .filter(|i| i.state == InstanceState::Running)
        .cloned()
        .collect();
    if running.is_empty() {
        return;
    }
    let store = store.clone();
    let driver = driver.clone();
    tokio::spawn(async move {
        for instance in running {
            let Some(seen) = driver.observe(&instance).await else {
                continue;
            };
            if seen == instance.state {
                continue;
            }
            tracing::info!(instance = %instance.id, state = seen.name(), "the compute driver reports a new state");
            let id = instance.id.clone();
            let result = store
                .mutate(move |state: &mut State| {
                    // Running -> terminated goes through shutting-down, as EC2's states do.
                    if seen == InstanceState::Terminated {
                        state.set_instance_state(
                            &id,
                            InstanceState::ShuttingDown,
                            crate::actions::now_ms(),
                        )?;
                    }
                    state.set_instance_state(&id, seen, crate::actions::now_ms())
                })
                .await;
            if let Err(err) = result {
                tracing::debug!(instance = %instance.id, error = %err, "observed state not recorded");
            }
        }
    });
}

fn needs_work(state: InstanceState) -> bool {
    matches!(state, InstanceState::Pending | InstanceState::ShuttingDown)
}

fn instances_needing_work(state: &State) -> Vec<Instance> {
    state
        .tenants()
        .flat_map(|t| t.instances.values())
        .filter(|i| needs_work(i.state))
        .cloned()
        .collect()
}

fn act(store: &Store, driver: &Arc<dyn ComputeDriver>, instance: Instance) {
    let store = store.clone();
    let driver = driver.clone();
    tokio::spawn(async move {
        let (result, next) = match instance.state {
            InstanceState::Pending => (driver.launch(&instance).await, InstanceState::Running),
            InstanceState::ShuttingDown => (driver.terminate(&instance).await, InstanceState::Terminated),
            _ => return,
        };
        if let Err(reason) = result {
            tracing::warn!(instance = %instance.id, driver = driver.name(), %reason, "compute driver failed");
            return;
        }
        if next == InstanceState::Running && driver.awaits_binding(&instance) {
            tracing::info!(instance = %instance.id, "launched; running once its port is bound");
            return;
        }
        let id: InstanceId = instance.id.clone();
        let recorded = store
            .mutate(move |state: &mut State| state.set_instance_state(&id, next, crate::actions::now_ms()))
            .await;
        match recorded {
            Ok(()) => tracing::debug!(instance = %instance.id, state = next.name(), "instance state changed"),
            // Moved on meanwhile (terminated while launching, ...): the feed brings the next step.
            Err(err) => tracing::debug!(instance = %instance.id, error = %err, "instance state not recorded"),
        }
    });
}
