//! The OpenFlow controller runtime: switch sessions that keep every flow
//! table equal to the desired one.
//!
//! Whatever happens to connections, switches or the controller itself, each
//! switch's flow table converges to the flow set published for its datapath
//! id, with the fewest flow-mods and without disturbing traffic:
//!
//! * A publisher (the policy compiler) hands a [`FlowSet`] per datapath to
//!   [`DesiredState`]; publishing is cheap and never blocks on switches.
//! * Each switch connection runs a session ([`session`]) that negotiates
//!   OpenFlow 1.3, learns the datapath id and ports, reads the actual flows,
//!   and lets the pure [`reconcile::Reconciler`] decide the delta, sent as an
//!   atomic bundle and confirmed by a barrier. A controller restart with
//!   nothing changed therefore sends no flow-mod, and a switch that restarts
//!   gets its flows back.
//! * Flow counters are read on demand ([`Controller::flow_stats`],
//!   [`Controller::flow_counters`]): since every flow's cookie names its
//!   owner, summing per cookie gives per-owner packet counts.
//! * Events (switches, ports, packet-ins, rejected flows) go to subscribers
//!   of [`Controller::subscribe`]; metrics render as Prometheus text.
//! * Several controllers may share switches ([`role`]): the one told to
//!   claim MASTER ([`Controller::set_role`]) reconciles, the others stay
//!   SLAVE and send nothing; a slave promoted to master reads the switch's
//!   flows again and reconciles against them, so a takeover with nothing
//!   changed sends no flow-mod.
//!
//! Switches should run with `fail_mode=secure`: without a controller they
//! keep forwarding with the flows they have, and never fall back to acting
//! as a learning switch that would bypass the security groups.

pub mod flow;
pub mod metrics;
pub mod ratelimit;
pub mod reconcile;
pub mod role;
mod session;
pub mod stats;
pub mod transport;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openflow::{FlowStats, FlowStatsRequest, PacketIn, PacketOut, Port};
use tokio::sync::{broadcast, mpsc, watch};

pub use flow::{Flow, FlowSet};
pub use metrics::Metrics;
pub use reconcile::{Op, Rejection, RoundReport};
pub use role::{RoleClaim, SwitchRole};
pub use stats::{FlowCounters, StatsError, counters_by_cookie};
pub use transport::{ListenAddr, Listener};

/// How the controller treats its switches.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Send an echo request after this long without hearing from a switch.
    pub echo_interval: Duration,
    /// Drop a switch that has been silent this long.
    pub dead_after: Duration,
    /// How long a switch may take to answer the handshake.
    pub handshake_timeout: Duration,
    /// Apply changes with atomic bundles where the switch supports them.
    pub use_bundles: bool,
    /// Packet-ins accepted per second and switch (beyond: dropped, counted).
    pub packet_in_rate: u32,
    /// Packet-ins accepted in a burst.
    pub packet_in_burst: u32,
    /// Role claimed on every switch from the start (see
    /// [`Controller::set_role`] to change it later); the default claims
    /// none, which leaves the switch's default (`EQUAL`).
    pub role: RoleClaim,
    /// After a switch connects, and after this controller becomes its
    /// master, wait up to this long for the publisher to
    /// [`DesiredState::release`] it before reconciling (the session
    /// announces the wait with [`ControllerEvent::Holding`]). A restarted
    /// controller learns ports (and so which instance flows belong) only
    /// from the switch itself, and a slave taking over may not have caught
    /// up with the store yet; reconciling against a half-known desired set
    /// would delete flows it re-adds moments later. `None` reconciles at
    /// once.
    pub initial_desired_wait: Option<Duration>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            echo_interval: Duration::from_secs(5),
            dead_after: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(10),
            use_bundles: true,
            packet_in_rate: 200,
            packet_in_burst: 400,
            role: RoleClaim::Equal,
            initial_desired_wait: None,
        }
    }
}

/// Something that happened on a switch.
#[derive(Debug, Clone)]
pub enum ControllerEvent {
    /// A switch finished its handshake.
    SwitchConnected {
        /// Its datapath id.
        datapath_id: u64,
        /// Its ports.
        ports: Vec<Port>,
    },
    /// A switch's session ended.
    SwitchDisconnected {
        /// Its datapath id.
        datapath_id: u64,
    },
    /// A port was added, removed or changed (`reason` is `OFPPR_*`).
    PortStatus {
        /// The switch.
        datapath_id: u64,
        /// `openflow::port::port_reason`.
        reason: u8,
        /// The port as it is now.
        port: Port,
    },
    /// A packet sent to the controller (after rate limiting).
    PacketIn {
        /// The switch.
        datapath_id: u64,
        /// The packet.
        packet_in: Arc<PacketIn>,
    },
    /// A session waits for [`DesiredState::release`] with `ticket` before
    /// it reconciles: its switch just connected, or this controller just
    /// became its master. Sent only when
    /// [`ControllerConfig::initial_desired_wait`] is set.
    Holding {
        /// The switch.
        datapath_id: u64,
        /// What to release it with.
        ticket: u64,
    },
    /// The switch granted or refused the role this controller claimed.
    RoleChanged {
        /// The switch.
        datapath_id: u64,
        /// This controller's role on it now.
        role: SwitchRole,
    },
    /// A reconcile round completed.
    Reconciled {
        /// The switch.
        datapath_id: u64,
        /// What it did.
        report: Arc<RoundReport>,
    },
}

/// Errors of the controller's API.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// No session for this datapath id.
    #[error("switch {0:016x} is not connected")]
    NotConnected(u64),
    /// Timed out waiting for a switch.
    #[error("timed out waiting for switch {0:016x}")]
    Timeout(u64),
    /// Binding or accepting failed.
    #[error("OpenFlow listener: {0}")]
    Io(#[from] std::io::Error),
    /// A switch could not give flow statistics.
    #[error("switch {0:016x}: {1}")]
    Stats(u64, StatsError),
}

/// A published desired flow set with its generation number.
#[derive(Debug, Clone, Default)]
pub(crate) struct Published {
    pub(crate) generation: u64,
    pub(crate) flows: Arc<FlowSet>,
    /// The highest ticket the publisher released ([`DesiredState::release`]).
    pub(crate) released: u64,
}

/// The desired flow sets of every datapath. Publishing stores the new set
/// and wakes the switch's session, if any; it never waits for a switch.
#[derive(Debug, Clone, Default)]
pub struct DesiredState {
    inner: Arc<Mutex<HashMap<u64, watch::Sender<Published>>>>,
}

impl DesiredState {
    fn sender(&self, datapath_id: u64) -> watch::Sender<Published> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(datapath_id)
            .or_insert_with(|| watch::channel(Published::default()).0)
            .clone()
    }

    /// Replaces the whole flow set of a datapath; returns its generation.
    pub fn publish(&self, datapath_id: u64, flows: FlowSet) -> u64 {
        self.update(datapath_id, |set| *set = flows)
    }

    /// Changes the flow set of a datapath in place (e.g. one owner);
    /// returns the new generation.
    pub fn update(&self, datapath_id: u64, change: impl FnOnce(&mut FlowSet)) -> u64 {
        let tx = self.sender(datapath_id);
        let mut generation = 0;
        tx.send_modify(|p| {
            let mut set = (*p.flows).clone();
            change(&mut set);
            p.flows = Arc::new(set);
            p.generation += 1;
            generation = p.generation;
        });
        generation
    }

    /// Declares the datapath's flow set complete for the session that
    /// announced `ticket` ([`ControllerEvent::Holding`]): it goes ahead and
    /// reconciles. Tickets grow, so releasing one releases every earlier
    /// one too, and a release of an older wait never ends a newer one.
    pub fn release(&self, datapath_id: u64, ticket: u64) {
        self.sender(datapath_id).send_if_modified(|p| {
            let newer = ticket > p.released;
            p.released = p.released.max(ticket);
            newer
        });
    }

    /// The generation of a datapath's current flow set (what
    /// [`Controller::wait_synced`] waits for).
    pub fn generation(&self, datapath_id: u64) -> u64 {
        self.sender(datapath_id).borrow().generation
    }

    /// The current flow set of a datapath.
    pub fn get(&self, datapath_id: u64) -> Arc<FlowSet> {
        self.sender(datapath_id).borrow().flows.clone()
    }

    pub(crate) fn subscribe(&self, datapath_id: u64) -> watch::Receiver<Published> {
        self.sender(datapath_id).subscribe()
    }
}

/// What a session exposes to the rest of the controller.
#[derive(Debug)]
pub(crate) struct SessionHandle {
    pub(crate) id: u64,
    pub(crate) commands: mpsc::Sender<session::Command>,
    pub(crate) info: Arc<Mutex<SwitchInfo>>,
    /// Generation of the desired set the switch is known to hold.
    pub(crate) synced: watch::Receiver<u64>,
}

/// What is known about a connected switch.
#[derive(Debug, Clone, Default)]
pub struct SwitchInfo {
    /// Datapath id.
    pub datapath_id: u64,
    /// Where it connected from.
    pub peer: String,
    /// Ports by number.
    pub ports: Vec<Port>,
    /// Flows it should have.
    pub flows_desired: usize,
    /// Flows it is known to have.
    pub flows_installed: usize,
    /// Flows it refused, quarantined until their owner changes them.
    pub flows_rejected: usize,
    /// Whether changes go in bundles.
    pub bundles: bool,
    /// What the switch granted this controller.
    pub role: SwitchRole,
    /// The ticket the session waits to be released with before it
    /// reconciles, if it waits ([`ControllerEvent::Holding`]).
    pub holding: Option<u64>,
}

impl SwitchInfo {
    /// The number of the port named `name`.
    pub fn port_no(&self, name: &str) -> Option<u32> {
        self.ports.iter().find(|p| p.name == name).map(|p| p.port_no.0)
    }
}

pub(crate) struct Shared {
    pub(crate) config: ControllerConfig,
    pub(crate) desired: DesiredState,
    pub(crate) sessions: Mutex<HashMap<u64, SessionHandle>>,
    pub(crate) events: broadcast::Sender<ControllerEvent>,
    pub(crate) metrics: Metrics,
    pub(crate) next_session_id: std::sync::atomic::AtomicU64,
    /// The role every session claims.
    pub(crate) role: watch::Sender<RoleClaim>,
    /// Hands out the tickets of [`ControllerEvent::Holding`].
    pub(crate) next_ticket: std::sync::atomic::AtomicU64,
}

/// The controller: cheap to clone, shared by the listener tasks, the
/// sessions and whoever publishes flows.
#[derive(Clone)]
pub struct Controller {
    shared: Arc<Shared>,
}

impl Controller {
    /// A controller with no switches yet.
    pub fn new(config: ControllerConfig) -> Controller {
        let role = watch::channel(config.role).0;
        Controller {
            shared: Arc::new(Shared {
                config,
                desired: DesiredState::default(),
                sessions: Mutex::new(HashMap::new()),
                events: broadcast::channel(4096).0,
                metrics: Metrics::default(),
                next_session_id: std::sync::atomic::AtomicU64::new(1),
                role,
                next_ticket: std::sync::atomic::AtomicU64::new(1),
            }),
        }
    }

    /// Claims `claim` on every switch, connected now or later. Claiming
    /// MASTER makes each session ask its switch, read the switch's flows
    /// once granted, and reconcile (after a [`ControllerEvent::Holding`]
    /// wait when configured); claiming SLAVE stops flow-mods and
    /// packet-outs at once.
    pub fn set_role(&self, claim: RoleClaim) {
        self.shared.role.send_if_modified(|current| {
            let changed = *current != claim;
            *current = claim;
            changed
        });
    }

    /// The role claimed on every switch.
    pub fn role(&self) -> RoleClaim {
        *self.shared.role.borrow()
    }

    /// Where desired flow sets are published.
    pub fn desired(&self) -> &DesiredState {
        &self.shared.desired
    }

    /// Events from now on. A subscriber that falls more than 4096 events
    /// behind loses the oldest ones (and is told so by the channel).
    pub fn subscribe(&self) -> broadcast::Receiver<ControllerEvent> {
        self.shared.events.subscribe()
    }

    /// The controller's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Every metric in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let mut text = ::metrics::Text::new();
        self.write_metrics(&mut text);
        text.finish()
    }

    /// Writes every metric to `text` (which may hold other components'
    /// metrics too).
    pub fn write_metrics(&self, text: &mut ::metrics::Text) {
        let gauges: Vec<_> = self
            .switches()
            .into_iter()
            .map(|s| metrics::SwitchGauges {
                datapath_id: s.datapath_id,
                flows_desired: s.flows_desired,
                flows_installed: s.flows_installed,
                flows_rejected: s.flows_rejected,
                role: s.role.name(),
            })
            .collect();
        self.shared.metrics.write(text, &gauges);
    }

    /// Connected switches.
    pub fn switches(&self) -> Vec<SwitchInfo> {
        let sessions = self.shared.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<SwitchInfo> = sessions
            .values()
            .map(|h| h.info.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        out.sort_by_key(|s| s.datapath_id);
        out
    }

    /// A connected switch.
    pub fn switch(&self, datapath_id: u64) -> Option<SwitchInfo> {
        let sessions = self.shared.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(&datapath_id)
            .map(|h| h.info.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Accepts switches on `listener` until the task is dropped.
    pub async fn serve(&self, listener: Listener) -> Result<(), ControllerError> {
        loop {
            let (stream, peer) = listener.accept().await?;
            let shared = self.shared.clone();
            tokio::spawn(async move {
                match stream {
                    transport::Stream::Tcp(s) => session::run(shared, s, peer).await,
                    transport::Stream::Unix(s) => session::run(shared, s, peer).await,
                    transport::Stream::Tls(pending) => {
                        match pending.handshake(shared.config.handshake_timeout).await {
                            Ok(s) => session::run(shared, s, peer).await,
                            Err(error) => {
                                // No session: the switch never registers.
                                shared
                                    .metrics
                                    .tls_refused
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                tracing::warn!(%peer, %error, "refusing switch: no valid TLS client certificate or handshake");
                            }
                        }
                    }
                }
            });
        }
    }

    /// Sends a packet out of a switch.
    pub async fn packet_out(&self, datapath_id: u64, packet: PacketOut) -> Result<(), ControllerError> {
        let tx = self.commands(datapath_id)?;
        tx.send(session::Command::PacketOut(packet))
            .await
            .map_err(|_| ControllerError::NotConnected(datapath_id))
    }

    fn commands(&self, datapath_id: u64) -> Result<mpsc::Sender<session::Command>, ControllerError> {
        let sessions = self.shared.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(&datapath_id)
            .map(|h| h.commands.clone())
            .ok_or(ControllerError::NotConnected(datapath_id))
    }

    /// Reads the flows `request` selects from a switch, with their
    /// counters, waiting at most `timeout` for the whole answer.
    pub async fn flow_stats(
        &self,
        datapath_id: u64,
        request: FlowStatsRequest,
        timeout: Duration,
    ) -> Result<Vec<FlowStats>, ControllerError> {
        let tx = self.commands(datapath_id)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let ask = async {
            tx.send(session::Command::FlowStats { request, reply })
                .await
                .map_err(|_| ControllerError::NotConnected(datapath_id))?;
            // The sender is dropped unanswered when the session ends.
            answer
                .await
                .map_err(|_| ControllerError::NotConnected(datapath_id))?
                .map_err(|e| ControllerError::Stats(datapath_id, e))
        };
        tokio::time::timeout(timeout, ask)
            .await
            .map_err(|_| ControllerError::Timeout(datapath_id))?
    }

    /// Packet and byte counters of the flows whose cookie matches `cookie`
    /// under `cookie_mask`, summed per cookie over every connected switch
    /// (asked all at once). Fails if any switch does not answer within
    /// `timeout`: a sum that silently missed a switch would undercount.
    pub async fn flow_counters(
        &self,
        cookie: u64,
        cookie_mask: u64,
        timeout: Duration,
    ) -> Result<BTreeMap<u64, FlowCounters>, ControllerError> {
        let request = FlowStatsRequest {
            cookie,
            cookie_mask,
            ..FlowStatsRequest::all()
        };
        let mut asks = tokio::task::JoinSet::new();
        for switch in self.switches() {
            let (controller, request) = (self.clone(), request.clone());
            asks.spawn(async move {
                controller
                    .flow_stats(switch.datapath_id, request, timeout)
                    .await
                    .map(|flows| counters_by_cookie(&flows))
            });
        }
        let mut total: BTreeMap<u64, FlowCounters> = BTreeMap::new();
        while let Some(answer) = asks.join_next().await {
            let per_cookie = match answer {
                Ok(result) => result?,
                // Only a bug panics in there: let it surface as one.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Nothing aborts these tasks while the set is alive.
                Err(_) => return Err(ControllerError::Timeout(0)),
            };
            for (cookie, counters) in per_cookie {
                total.entry(cookie).or_default().add(counters);
            }
        }
        Ok(total)
    }

    /// Waits until the switch holds (at least) generation `generation` of
    /// its desired flow set, confirmed by a barrier.
    pub async fn wait_synced(
        &self,
        datapath_id: u64,
        generation: u64,
        timeout: Duration,
    ) -> Result<(), ControllerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let rx = {
                let sessions = self.shared.sessions.lock().unwrap_or_else(|e| e.into_inner());
                sessions.get(&datapath_id).map(|h| h.synced.clone())
            };
            let mut rx = match rx {
                Some(rx) => rx,
                None => {
                    // Not connected (yet): poll for the session to appear.
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ControllerError::Timeout(datapath_id));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let wait = rx.wait_for(|g| *g >= generation);
            match tokio::time::timeout_at(deadline, wait).await {
                Ok(Ok(_)) => return Ok(()),
                // The session ended; a new one may come.
                Ok(Err(_)) => continue,
                Err(_) => return Err(ControllerError::Timeout(datapath_id)),
            }
        }
    }
}
