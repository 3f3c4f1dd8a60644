//! Several `flowgate serve` nodes on one PostgreSQL store (docs/nodes.md).
//!
//! Every node serves the EC2 API, compiles the model into every switch's
//! flows and keeps an OpenFlow session with every switch. The node the
//! store's election made leader is the switches' MASTER, claiming its role
//! with the election's epoch as generation id, and runs the compute
//! reconciler; the others are SLAVEs that change nothing and take over
//! when the leader goes. On SQLite there is one node, no election, and no
//! role: the node is everything, as before.

use std::time::{Duration, Instant};

use controller::{Controller, ControllerEvent, RoleClaim, SwitchRole};
use store::StoreLocation;
use store::election::{self, Leadership};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::config::Config;

/// How long serve waits for the election's first answer before it lets
/// switches in (as a slave, if there is still none).
const FIRST_ANSWER: Duration = Duration::from_secs(5);

/// How long a new master waits for its switches to be in sync before it
/// stops measuring the takeover.
const TAKEOVER_WATCH: Duration = Duration::from_secs(60);

/// Joins the election when the store is PostgreSQL and waits (bounded) for
/// its first answer; `None` on SQLite.
pub(crate) async fn join(
    config: &Config,
    api_port: u16,
) -> Result<Option<watch::Receiver<Leadership>>, String> {
    let StoreLocation::Postgres(url) = config.store_location()? else {
        return Ok(None);
    };
    let name = if config.nodes.name.is_empty() {
        format!("{}:{api_port}", host_name())
    } else {
        config.nodes.name.clone()
    };
    let mut leadership = election::start(&url, &name, config.election_options())
        .map_err(|e| format!("cannot join the election: {e}"))?;
    let answered = tokio::time::timeout(FIRST_ANSWER, leadership.wait_for(|l| *l != Leadership::Unknown))
        .await
        .is_ok_and(|r| r.is_ok());
    if !answered {
        tracing::warn!("no answer from the election yet; switches connect as slaves meanwhile");
    }
    tracing::info!(node = %name, "taking part in the election of the switches' master");
    Ok(Some(leadership))
}

/// The role every switch should grant this node now.
pub(crate) fn claim(leadership: Option<&watch::Receiver<Leadership>>) -> RoleClaim {
    match leadership.map(|l| *l.borrow()) {
        None => RoleClaim::Equal,
        Some(Leadership::Leader { epoch }) => RoleClaim::Master { generation_id: epoch },
        Some(Leadership::Follower { epoch }) => RoleClaim::Slave { generation_id: epoch },
        // Until the election answers, claim nothing that could write.
        Some(Leadership::Unknown) => RoleClaim::Slave { generation_id: 0 },
    }
}

/// Runs `compute` (the compute reconciler) on the node that leads, and
/// claims each switch's role as the election says, until the election
/// ends. With no election (SQLite), just runs `compute`.
pub(crate) fn follow(
    leadership: Option<watch::Receiver<Leadership>>,
    controller: Controller,
    compute: impl Fn() -> JoinHandle<()> + Send + 'static,
) {
    let Some(mut leadership) = leadership else {
        compute();
        return;
    };
    tokio::spawn(async move {
        let mut running: Option<JoinHandle<()>> = None;
        loop {
            let now = *leadership.borrow_and_update();
            let claim = claim(Some(&leadership));
            if controller.role() != claim {
                controller.set_role(claim);
            }
            match now {
                Leadership::Leader { epoch } => {
                    if running.is_none() {
                        tracing::info!(
                            epoch,
                            "this node leads: OpenFlow master of every switch, running the compute reconciler"
                        );
                        // Subscribed before the sessions hear of the claim.
                        let events = controller.subscribe();
                        tokio::spawn(watch_takeover(controller.clone(), events, epoch));
                        running = Some(compute());
                    }
                }
                Leadership::Follower { epoch } => {
                    if let Some(task) = running.take() {
                        // A launch cut short is completed by the next
                        // leader: every step of the drivers tolerates
                        // having been done before.
                        task.abort();
                        tracing::warn!(
                            epoch,
                            "this node no longer leads: slave of every switch, compute reconciler stopped"
                        );
                    }
                }
                Leadership::Unknown => {}
            }
            if leadership.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Logs how long this node, just elected, took to be master of every
/// connected switch and have it in sync: the takeover time.
async fn watch_takeover(
    controller: Controller,
    mut events: broadcast::Receiver<ControllerEvent>,
    epoch: u64,
) {
    let elected = Instant::now();
    let switches: Vec<u64> = controller.switches().iter().map(|s| s.datapath_id).collect();
    let mut granted: Vec<u64> = controller
        .switches()
        .iter()
        .filter(|s| s.role == SwitchRole::Master)
        .map(|s| s.datapath_id)
        .collect();
    let all_synced = async {
        while switches.iter().any(|d| !granted.contains(d)) {
            match events.recv().await {
                Ok(ControllerEvent::RoleChanged {
                    datapath_id,
                    role: SwitchRole::Master,
                }) => granted.push(datapath_id),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return false,
            }
        }
        for &dpid in &switches {
            let generation = controller.desired().generation(dpid);
            let left = TAKEOVER_WATCH.saturating_sub(elected.elapsed());
            if controller.wait_synced(dpid, generation, left).await.is_err() {
                return false;
            }
        }
        true
    };
    match tokio::time::timeout(TAKEOVER_WATCH, all_synced).await {
        Ok(true) => tracing::info!(
            epoch,
            switches = switches.len(),
            took_ms = elected.elapsed().as_millis() as u64,
            "took over as master: every switch in sync"
        ),
        _ => tracing::warn!(
            epoch,
            switches = switches.len(),
            "not every switch was in sync {TAKEOVER_WATCH:?} after the election"
        ),
    }
}

/// This machine's host name, for the default node name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "flowgate".into())
}
