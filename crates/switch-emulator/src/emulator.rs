//! The library's front door: this module's one job is starting the
//! switches' tasks ([`Emulator::start`]) and giving tests a handle to look
//! at and steer them ([`EmulatorHandle`], [`SwitchView`]).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openflow::{FlowStats, Message, Port, PortNo};
use thiserror::Error;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{ConfigError, EmulatorConfig};
use crate::counters::Counters;
use crate::datapath::{Datapath, SwitchSpec};
use crate::faults::Faults;
use crate::runtime::{self, Control, Shared, SwitchShared};

/// Why the emulator could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `start` was called outside a tokio runtime.
    #[error("the emulator must be started from within a tokio runtime")]
    NoRuntime,
}

/// A wait did not see its condition in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("timed out after {0:?}")]
pub struct Timeout(pub Duration);

/// Starts emulators.
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// Creates the switches and starts connecting them to the controllers;
    /// must be called from within a tokio runtime (the tasks run on it).
    pub fn start(config: EmulatorConfig) -> Result<EmulatorHandle, StartError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let (stop, _) = watch::channel(false);
        let (connected, _) = watch::channel(0usize);
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            stop,
            connected,
            next_conn: AtomicU64::new(1),
            session: config.session.clone(),
            backoff: config.backoff,
        });
        let mut switches = Vec::with_capacity(config.switches);
        let mut by_dpid = HashMap::with_capacity(config.switches);
        let mut tasks = JoinSet::new();
        let n = config.switches as u64;
        for index in 0..n {
            let datapath_id = config.datapath_id_base + index;
            let spec = SwitchSpec {
                index,
                datapath_id,
                name: format!("{}{index}", config.bridge_prefix),
                ports: config.ports_per_switch,
                port_prefix: config.port_prefix.clone(),
                max_flows: config.max_flows,
            };
            let dp = Datapath::new(spec, config.faults.clone(), 0);
            let (control, _) = watch::channel(Control {
                online: true,
                kicks: 0,
            });
            // Asynchronous messages are rare (port changes, flow
            // removals); a small buffer per switch keeps memory flat.
            let (events, _) = broadcast::channel(64);
            let sw = Arc::new(SwitchShared {
                dp: Mutex::new(dp),
                control,
                events,
            });
            let delay = config.connect_spread.mul_f64(index as f64 / n as f64);
            for target in &config.controllers {
                tasks.spawn_on(
                    runtime::run(shared.clone(), sw.clone(), target.clone(), delay),
                    &runtime,
                );
            }
            by_dpid.insert(datapath_id, switches.len());
            switches.push(sw);
        }
        Ok(EmulatorHandle {
            shared,
            switches,
            by_dpid,
            tasks: Mutex::new(tasks),
        })
    }
}

/// A running emulator.
#[derive(Debug)]
pub struct EmulatorHandle {
    shared: Arc<Shared>,
    switches: Vec<Arc<SwitchShared>>,
    by_dpid: HashMap<u64, usize>,
    tasks: Mutex<JoinSet<()>>,
}

impl EmulatorHandle {
    /// The switches' datapath ids, in order.
    pub fn datapath_ids(&self) -> Vec<u64> {
        self.switches.iter().map(|s| s.lock().datapath_id()).collect()
    }

    /// The switch with datapath id `dpid`.
    pub fn switch(&self, dpid: u64) -> Option<SwitchView> {
        let i = *self.by_dpid.get(&dpid)?;
        Some(self.view(i))
    }

    /// Every switch, in order.
    pub fn switches(&self) -> impl Iterator<Item = SwitchView> + '_ {
        (0..self.switches.len()).map(|i| self.view(i))
    }

    fn view(&self, i: usize) -> SwitchView {
        SwitchView {
            sw: self.switches[i].clone(),
            shared: self.shared.clone(),
        }
    }

    /// Counters summed over every switch.
    pub fn counters(&self) -> Counters {
        let mut total = Counters::default();
        for sw in &self.switches {
            total += sw.lock().counters();
        }
        total
    }

    /// Switches with at least one negotiated controller connection.
    pub fn connected(&self) -> usize {
        *self.shared.connected.borrow()
    }

    /// Waits until at least `n` switches are connected.
    pub async fn wait_connected(&self, n: usize, timeout: Duration) -> Result<(), Timeout> {
        let mut rx = self.shared.connected.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Timeout(timeout)),
        }
    }

    /// Waits until `condition` holds, checking every few milliseconds.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&EmulatorHandle) -> bool,
    ) -> Result<(), Timeout> {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(self) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Timeout(timeout));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Drops the connections of switch `dpid`, which reconnects after its
    /// backoff; `false` if there is no such switch.
    pub fn disconnect(&self, dpid: u64) -> bool {
        self.switch(dpid).map(|s| s.disconnect()).is_some()
    }

    /// Stops every switch, waits for their tasks, and returns the final
    /// counters.
    pub async fn stop(self) -> Counters {
        self.shared.stop.send_replace(true);
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        while tasks.join_next().await.is_some() {}
        self.counters()
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        // Tasks end when told to stop; JoinSet's drop aborts any left.
        self.shared.stop.send_replace(true);
    }
}

/// One emulated switch, for looking and steering.
#[derive(Debug, Clone)]
pub struct SwitchView {
    sw: Arc<SwitchShared>,
    shared: Arc<Shared>,
}

impl SwitchView {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.shared.now().as_millis()).unwrap_or(u64::MAX)
    }

    /// The datapath id.
    pub fn datapath_id(&self) -> u64 {
        self.sw.lock().datapath_id()
    }

    /// The bridge name (also the `LOCAL` port's name).
    pub fn name(&self) -> String {
        self.sw.lock().spec.name.clone()
    }

    /// Every flow, as a flow statistics reply would show it, ordered by
    /// table, priority (highest first) and match.
    pub fn flows(&self) -> Vec<FlowStats> {
        let now = self.now_ms();
        self.sw.lock().flows(now)
    }

    /// Number of flows.
    pub fn flow_count(&self) -> usize {
        self.sw.lock().flow_count()
    }

    /// This switch's counters.
    pub fn counters(&self) -> Counters {
        self.sw.lock().counters()
    }

    /// Whether a controller connection is negotiated.
    pub fn is_connected(&self) -> bool {
        self.sw.lock().connections() > 0
    }

    /// Waits until the switch holds exactly `n` flows.
    pub async fn wait_flow_count(&self, n: usize, timeout: Duration) -> Result<(), Timeout> {
        let deadline = Instant::now() + timeout;
        while self.flow_count() != n {
            if Instant::now() >= deadline {
                return Err(Timeout(timeout));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Drops the switch's connections; it reconnects after its backoff,
    /// flows intact (as a switch does when its controller link flaps).
    pub fn disconnect(&self) {
        self.sw.control.send_modify(|c| c.kicks += 1);
    }

    /// Takes the switch off the network (`false`: connections dropped and
    /// not retried) or back on (`true`).
    pub fn set_online(&self, online: bool) {
        self.sw.control.send_modify(|c| c.online = online);
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.sw.lock().faults().clone()
    }

    /// Replaces the faults in force (from the next message on).
    pub fn set_faults(&self, faults: Faults) {
        self.sw.lock().set_faults(faults);
    }

    /// The ports, `LOCAL` last.
    pub fn ports(&self) -> Vec<Port> {
        self.sw.lock().ports().all().to_vec()
    }

    /// Adds a port named `name` (at most 15 bytes) with the lowest free
    /// number and announces it to the controllers; returns its number.
    pub fn add_port(&self, name: &str) -> PortNo {
        let (port_no, status) = self.sw.lock().add_port(name);
        let _ = self.sw.events.send(Message::PortStatus(status));
        port_no
    }

    /// Removes a port and announces it; `false` if there is no such port.
    pub fn remove_port(&self, port_no: PortNo) -> bool {
        let status = self.sw.lock().remove_port(port_no);
        status
            .map(|s| {
                let _ = self.sw.events.send(Message::PortStatus(s));
            })
            .is_some()
    }

    /// Sets a port's link up or down and announces it; `false` if there is
    /// no such port.
    pub fn set_port_link(&self, port_no: PortNo, up: bool) -> bool {
        let status = self.sw.lock().set_port_link(port_no, up);
        status
            .map(|s| {
                let _ = self.sw.events.send(Message::PortStatus(s));
            })
            .is_some()
    }
}
