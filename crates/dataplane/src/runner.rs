//! The task that keeps the data plane in step: store changes and switch
//! events in, compiled flows out to the controller, bindings back to the
//! store, ARP for the public gateway and for moved Elastic IPs.
//!
//! Every node runs it, master or slave of the switches, so that a slave's
//! desired flows are complete when it takes over; only packets (ARP probes,
//! gratuitous ARPs) are left to the switches' master. A session that waits
//! before reconciling (after connecting, or after this node became master)
//! is released once the model has caught up with everything committed in
//! the store before the wait began and what a restart forgets is known
//! again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use compiler::{OwnerKind, Update, elastic_ip_mac};
use controller::{Controller, ControllerEvent, Flow, SwitchRole};
use model::{InstanceId, InstanceState, State};
use openflow::port::port_reason;
use openflow::{Action, MacAddr, OFP_NO_BUFFER, PacketOut, PortNo};
use store::Store;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;

use crate::arp;
use crate::translate::{BindingChange, Translator};

/// How the data plane behaves.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// The public gateway's MAC, if configured; otherwise (and to keep it
    /// current) it is resolved with ARP.
    pub public_gateway_mac: Option<MacAddr>,
    /// How often the gateway is ARPed for.
    pub arp_refresh: Duration,
    /// Gratuitous ARPs sent (as requests and as replies) when an Elastic IP
    /// is associated or moves.
    pub garp_count: u32,
    /// Time between them.
    pub garp_interval: Duration,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            public_gateway_mac: None,
            arp_refresh: Duration::from_secs(30),
            garp_count: 3,
            garp_interval: Duration::from_secs(1),
        }
    }
}

/// Port name -> `external_ids:iface-id`, per hypervisor name (see
/// `compute::iface_ids`).
pub type IfaceIds = BTreeMap<String, BTreeMap<String, String>>;

/// A switch's session is released to reconcile at the latest this long
/// after it connected, whatever is still unknown (it must stay below
/// `ControllerConfig::initial_desired_wait`).
const RELEASE_DEADLINE: Duration = Duration::from_secs(2);

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// A session waiting for its release ([`ControllerEvent::Holding`]).
struct Hold {
    datapath_id: u64,
    ticket: u64,
    /// Released at the latest then, whatever is still unknown.
    deadline: Instant,
    /// The store catch-up ([`Store::sync`]) that must have completed: one
    /// started after the wait began.
    sync: u64,
}

/// Catching up with the store for the holds: syncs started and completed,
/// one at a time.
#[derive(Default)]
struct Syncs {
    started: u64,
    done: u64,
}

impl Syncs {
    /// The sync a hold beginning now needs: one not yet started.
    fn next(&self) -> u64 {
        self.started + 1
    }

    fn in_flight(&self) -> bool {
        self.started > self.done
    }
}

/// Runs until the store's change feed closes. `iface_ids` says which ports
/// carry an instance id in their `external_ids:iface-id` (a closed channel
/// means none do).
pub async fn run(
    store: Store,
    controller: Controller,
    config: DataplaneConfig,
    mut iface_ids: watch::Receiver<IfaceIds>,
) {
    let mut events = controller.subscribe();
    let (synced_tx, mut synced_rx) = tokio::sync::mpsc::channel::<bool>(1);
    let mut syncs = Syncs::default();
    let mut iface_ids_open = true;
    // The watcher's first reading, even an empty one, counts as knowing.
    let mut iface_ids_known = false;
    'reload: loop {
        let (snapshot, revision, mut feed) = store.subscribe();
        let mut translator = Translator::new(config.public_gateway_mac);
        translator.load(&snapshot);
        translator.set_iface_ids(&iface_ids.borrow_and_update());
        for switch in controller.switches() {
            translator.switch_connected(switch.datapath_id, &switch.ports);
        }
        tracing::info!(revision, "data plane loaded the model");
        let mut arp_timer = tokio::time::interval(config.arp_refresh);
        arp_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Sessions that hold their reconcile (see
        // `ControllerConfig::initial_desired_wait`): they are released once
        // their flows are published from a model that caught up with the
        // store, with everything a restart forgets (the public gateway's
        // MAC, iface-id bindings), or at a deadline.
        let mut holding: Vec<Hold> = Vec::new();
        for switch in controller.switches() {
            if let Some(ticket) = switch.holding {
                hold(&mut holding, &syncs, switch.datapath_id, ticket);
            }
        }
        loop {
            if holding.iter().any(|h| h.sync > syncs.started) && !syncs.in_flight() {
                syncs.started += 1;
                start_sync(&store, synced_tx.clone());
            }
            step(&store, &controller, &config, &mut translator);
            let learned = iface_ids_known
                && (translator.gateway_mac().is_some() || translator.public_gateway_ip().is_none());
            let now = Instant::now();
            holding.retain(|h| {
                let release = (learned && syncs.done >= h.sync) || now >= h.deadline;
                if release {
                    controller.desired().release(h.datapath_id, h.ticket);
                }
                !release
            });
            let next_release = holding.iter().map(|h| h.deadline).min();
            tokio::select! {
                event = feed.recv() => match event {
                    Ok(event) => {
                        for change in event.changes.iter() {
                            translator.apply(change);
                        }
                        // Take whatever else is already waiting before compiling.
                        while let Ok(event) = feed.try_recv() {
                            for change in event.changes.iter() {
                                translator.apply(change);
                            }
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "data plane fell behind the store; reloading the model");
                        continue 'reload;
                    }
                    Err(RecvError::Closed) => return,
                },
                event = events.recv() => {
                    // Take whatever else is already waiting before compiling:
                    // a hypervisor plugging many ports at once reports them
                    // in a burst, and one compile for the burst beats one
                    // per port.
                    let mut next = Some(event);
                    while let Some(event) = next.take() {
                        match event {
                            Ok(event) => {
                                match &event {
                                    ControllerEvent::Holding { datapath_id, ticket } => {
                                        hold(&mut holding, &syncs, *datapath_id, *ticket);
                                    }
                                    // Connected, or just became master: ask
                                    // the gateway (only a master may).
                                    ControllerEvent::SwitchConnected { .. }
                                    | ControllerEvent::RoleChanged { role: SwitchRole::Master, .. } => {
                                        resolve_gateway(&controller, &translator);
                                    }
                                    _ => {}
                                }
                                on_event(&mut translator, event);
                            }
                            Err(RecvError::Lagged(missed)) => {
                                tracing::warn!(missed, "data plane missed switch events; re-reading the switches");
                                for switch in controller.switches() {
                                    translator.switch_connected(switch.datapath_id, &switch.ports);
                                    if let Some(ticket) = switch.holding {
                                        hold(&mut holding, &syncs, switch.datapath_id, ticket);
                                    }
                                }
                            }
                            Err(RecvError::Closed) => return,
                        }
                        next = match events.try_recv() {
                            Ok(event) => Some(Ok(event)),
                            Err(TryRecvError::Lagged(missed)) => Some(Err(RecvError::Lagged(missed))),
                            Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
                            Err(TryRecvError::Empty) => None,
                        };
                    }
                }
                changed = iface_ids.changed(), if iface_ids_open => {
                    iface_ids_known = true;
                    match changed {
                        Ok(()) => translator.set_iface_ids(&iface_ids.borrow_and_update()),
                        Err(_) => iface_ids_open = false,
                    }
                }
                _ = arp_timer.tick() => resolve_gateway(&controller, &translator),
                Some(caught_up) = synced_rx.recv() => {
                    if !caught_up {
                        // Try again (the holds' deadlines bound the tries).
                        syncs.started = syncs.done;
                        continue;
                    }
                    syncs.done = syncs.started;
                    // The sync published what it caught up with before it
                    // answered: take it before releasing anyone.
                    loop {
                        match feed.try_recv() {
                            Ok(event) => {
                                for change in event.changes.iter() {
                                    translator.apply(change);
                                }
                            }
                            Err(TryRecvError::Lagged(missed)) => {
                                tracing::warn!(missed, "data plane fell behind the store; reloading the model");
                                continue 'reload;
                            }
                            Err(_) => break,
                        }
                    }
                }
                _ = sleep_until_some(next_release) => {}
            }
        }
    }
}

fn on_event(translator: &mut Translator, event: ControllerEvent) {
    match event {
        ControllerEvent::SwitchConnected { datapath_id, ports } => {
            translator.switch_connected(datapath_id, &ports)
        }
        ControllerEvent::PortStatus {
            datapath_id,
            reason,
            port,
        } => translator.switch_port(datapath_id, &port, reason != port_reason::DELETE),
        ControllerEvent::PacketIn { packet_in, .. } => {
            if let Some((ip, mac)) = arp::reply_sender(&packet_in.data)
                && Some(ip) == translator.public_gateway_ip()
            {
                if translator.gateway_mac() != Some(mac) {
                    tracing::info!(gateway = %ip, %mac, "public gateway resolved");
                }
                translator.set_gateway_mac(mac);
            }
        }
        ControllerEvent::SwitchDisconnected { .. }
        | ControllerEvent::Reconciled { .. }
        | ControllerEvent::Holding { .. }
        | ControllerEvent::RoleChanged { .. } => {}
    }
}

/// Remembers a session's wait for its release.
fn hold(holding: &mut Vec<Hold>, syncs: &Syncs, datapath_id: u64, ticket: u64) {
    holding.push(Hold {
        datapath_id,
        ticket,
        deadline: Instant::now() + RELEASE_DEADLINE,
        sync: syncs.next(),
    });
}

/// Catches the store up with everything committed by any node until now
/// (a node taking over may not have heard of its predecessor's last
/// commits yet), then says whether it did. A failure is logged; the holds
/// it was for are released at their deadline at the latest.
fn start_sync(store: &Store, done: tokio::sync::mpsc::Sender<bool>) {
    let store = store.clone();
    tokio::spawn(async move {
        let result = store.sync().await;
        if let Err(err) = &result {
            tracing::warn!(error = %err, "cannot catch up with the store before reconciling");
        }
        let _ = done.send(result.is_ok()).await;
    });
}

/// Whether this node may send packets out of the switch: its master (or,
/// with one node, its only controller).
fn writes(controller: &Controller, datapath_id: u64) -> bool {
    controller.switch(datapath_id).is_some_and(|s| s.role.writes())
}

/// Compiles what changed and acts on it.
fn step(store: &Store, controller: &Controller, config: &DataplaneConfig, translator: &mut Translator) {
    // One publication per switch, however many owners changed on it; each
    // update becomes the controller's flows as soon as it is compiled.
    let mut by_switch: BTreeMap<u64, Vec<(u64, Vec<Flow>)>> = BTreeMap::new();
    let mut appeared: Vec<String> = Vec::new();
    let bindings = translator.flush_each(|update| {
        if update.owner.kind == OwnerKind::Address && !update.flows.is_empty() {
            appeared.push(update.owner.id.clone());
        }
        let (dpid, cookie) = (update.datapath_id, update.cookie);
        by_switch
            .entry(dpid)
            .or_default()
            .push((cookie, controller_flows(update)));
    });
    // An Elastic IP that (re)appears somewhere announces itself there.
    let announced: Vec<_> = appeared
        .iter()
        .filter_map(|id| translator.address_location(id))
        .collect();
    for (dpid, owners) in by_switch {
        controller.desired().update(dpid, |set| {
            for (cookie, flows) in owners {
                set.set_owner(cookie, flows);
            }
        });
    }
    for (dpid, uplink, ip) in announced {
        // The master announces; a slave's packets would be refused.
        if writes(controller, dpid) {
            announce(controller, config, dpid, uplink, ip);
        }
    }
    for binding in bindings {
        record_binding(store, binding);
    }
}

/// The controller's flows of one compiled update. The compiler keeps only
/// fingerprints (`Compiler::forget_flows`), so the update usually holds the
/// only reference to its flows: their matches and instructions are moved,
/// not copied, and at no moment does a flow exist twice.
pub fn controller_flows(update: Update) -> Vec<Flow> {
    let mut specs = update.flows;
    match Arc::get_mut(&mut specs) {
        Some(specs) => specs
            .iter_mut()
            .map(|f| {
                Flow::new(
                    f.stage.table(),
                    f.priority,
                    std::mem::take(&mut f.match_),
                    std::mem::take(&mut f.instructions),
                )
            })
            .collect(),
        None => specs
            .iter()
            .map(|f| {
                Flow::new(
                    f.stage.table(),
                    f.priority,
                    f.match_.clone(),
                    f.instructions.clone(),
                )
            })
            .collect(),
    }
}

/// An instance whose port appeared is running; a running instance whose
/// port went away (its VM was unplugged or stopped outside flowgate) is
/// pending again until the port comes back.
fn record_binding(store: &Store, binding: BindingChange) {
    let (from, to) = match binding.port {
        Some((dpid, port)) => {
            tracing::info!(instance = %binding.instance, datapath_id = format_args!("{dpid:016x}"), port, "instance bound");
            (InstanceState::Pending, InstanceState::Running)
        }
        None => {
            tracing::info!(instance = %binding.instance, "instance port gone");
            (InstanceState::Running, InstanceState::Pending)
        }
    };
    let Ok(id) = InstanceId::parse(&binding.instance) else {
        return;
    };
    let store = store.clone();
    tokio::spawn(async move {
        let result = store
            .mutate(move |state: &mut State| {
                let current = state
                    .instance_owner(&id)
                    .cloned()
                    .and_then(|owner| state.resolve_instance(&owner, &id).ok().map(|i| i.state));
                if current == Some(from) {
                    state.set_instance_state(&id, to, now_ms())
                } else {
                    Ok(())
                }
            })
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, state = ?to, "could not record an instance's new state");
        }
    });
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Gratuitous ARP for an Elastic IP from the hypervisor now hosting it, as
/// requests and replies, a few times over a few seconds: upstream caches
/// and learning switches follow the address.
fn announce(
    controller: &Controller,
    config: &DataplaneConfig,
    dpid: u64,
    uplink: u32,
    ip: std::net::Ipv4Addr,
) {
    let controller = controller.clone();
    let (count, interval) = (config.garp_count, config.garp_interval);
    tokio::spawn(async move {
        let mac = elastic_ip_mac(ip);
        for i in 0..count {
            if i > 0 {
                tokio::time::sleep(interval).await;
            }
            for reply in [false, true] {
                let out = PacketOut {
                    buffer_id: OFP_NO_BUFFER,
                    in_port: PortNo::CONTROLLER,
                    actions: vec![Action::output(PortNo(uplink))],
                    data: arp::gratuitous(mac, ip, reply),
                };
                if let Err(err) = controller.packet_out(dpid, out).await {
                    tracing::debug!(error = %err, %ip, "gratuitous ARP not sent");
                    return;
                }
            }
        }
        tracing::info!(%ip, datapath_id = format_args!("{dpid:016x}"), "Elastic IP announced");
    });
}

/// Asks for the public gateway's MAC out of every connected hypervisor's
/// uplink; the reply comes back as a packet-in.
///
/// The request is an ARP probe: sender address 0.0.0.0, so the gateway
/// learns nothing from it (asking as an Elastic IP would repoint the
/// gateway's cache entry for that address at whoever asked), and a sender
/// MAC of the asking hypervisor's own, so the physical network learns each
/// hypervisor's MAC on its own uplink and nothing flaps.
fn resolve_gateway(controller: &Controller, translator: &Translator) {
    let Some(gateway) = translator.public_gateway_ip() else {
        return;
    };
    for (dpid, uplink) in translator.connected_hypervisors() {
        if !writes(controller, dpid) {
            continue;
        }
        let frame = arp::request(
            arp::hypervisor_mac(dpid),
            std::net::Ipv4Addr::UNSPECIFIED,
            gateway,
        );
        let controller = controller.clone();
        let out = PacketOut {
            buffer_id: OFP_NO_BUFFER,
            in_port: PortNo::CONTROLLER,
            actions: vec![Action::output(PortNo(uplink))],
            data: frame,
        };
        tokio::spawn(async move {
            if let Err(err) = controller.packet_out(dpid, out).await {
                tracing::debug!(error = %err, "gateway ARP not sent");
            }
        });
    }
}
