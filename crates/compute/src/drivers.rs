//! The driver `flowgate serve` runs: it routes each instance to the driver
//! of the hypervisor it is placed on (netns or external), and keeps
//! instances placed nowhere as records.

use std::sync::Arc;

use ec2api::compute::{ComputeDriver, ConsoleFuture, DriverFuture, ObserveFuture};
use model::{DriverKind, Instance, InstanceState, Object};
use store::Store;

use crate::external::ExternalDriver;
use crate::netns::{NetnsDriver, Placement};

/// Every driver, chosen per hypervisor.
pub struct Drivers {
    store: Store,
    netns: NetnsDriver,
    external: ExternalDriver,
}

impl Drivers {
    /// Drivers over `store`; the netns driver keeps its files in `state_dir`.
    pub fn new(store: Store, state_dir: impl Into<std::path::PathBuf>) -> Arc<Drivers> {
        Arc::new(Drivers {
            store,
            netns: NetnsDriver::new(state_dir),
            external: ExternalDriver,
        })
    }

    /// The driver kind and where the instance lives, or `None` for records.
    fn locate(&self, instance: &Instance) -> Result<Option<(DriverKind, Placement)>, String> {
        let Some(name) = &instance.hypervisor else {
            return Ok(None);
        };
        let state = self.store.read();
        let hv = state
            .hypervisors()
            .find(|h| &h.name == name)
            .ok_or_else(|| format!("hypervisor {name} is not registered"))?;
        let network = match state.get(model::Kind::Network, instance.subnet_id.as_str()) {
            Some(Object::Network(n)) => n,
            _ => return Err(format!("network {} is gone", instance.subnet_id)),
        };
        let bridge = match (&hv.bridge, hv.driver) {
            (Some(b), _) => b.clone(),
            (None, DriverKind::External) => String::new(),
            (None, DriverKind::Netns) => {
                return Err(format!("hypervisor {name} needs --bridge for the netns driver"));
            }
        };
        Ok(Some((
            hv.driver,
            Placement {
                bridge,
                ovsdb: hv.ovsdb.clone(),
                ovs_netns: hv.netns.clone(),
                prefix_len: network.cidr.prefix_len(),
                gateway: network.gateway,
            },
        )))
    }
}

impl ComputeDriver for Drivers {
    fn name(&self) -> &'static str {
        "flowgate"
    }

    fn launch<'a>(&'a self, instance: &'a Instance) -> DriverFuture<'a> {
        Box::pin(async move {
            match self.locate(instance)? {
                None => Ok(()),
                Some((DriverKind::Netns, at)) => {
                    self.netns.launch(instance, &at).await.map_err(|e| e.to_string())
                }
                Some((DriverKind::External, _)) => self.external.launch(instance),
            }
        })
    }

    fn terminate<'a>(&'a self, instance: &'a Instance) -> DriverFuture<'a> {
        Box::pin(async move {
            match self.locate(instance) {
                Ok(Some((DriverKind::Netns, at))) => self
                    .netns
                    .terminate(instance, &at)
                    .await
                    .map_err(|e| e.to_string()),
                Ok(Some((DriverKind::External, _))) => self.external.terminate(instance),
                Ok(None) => Ok(()),
                // The hypervisor or network is gone: nothing left to undo here.
                Err(reason) => {
                    tracing::warn!(instance = %instance.id, %reason, "terminating without the driver");
                    Ok(())
                }
            }
        })
    }

    fn awaits_binding(&self, instance: &Instance) -> bool {
        // Placed instances are running once their port is bound on the
        // switch; the data plane records that.
        instance.hypervisor.is_some()
    }

    fn observe<'a>(&'a self, instance: &'a Instance) -> ObserveFuture<'a> {
        Box::pin(async move {
            match self.locate(instance).ok().flatten() {
                Some((DriverKind::Netns, _)) if !self.netns.exists(instance).await => {
                    Some(InstanceState::Terminated)
                }
                _ => None,
            }
        })
    }

    fn console_output<'a>(&'a self, instance: &'a Instance) -> ConsoleFuture<'a> {
        Box::pin(async move {
            match self.locate(instance).ok().flatten() {
                Some((DriverKind::Netns, _)) => self.netns.console_output(instance).await,
                _ => None,
            }
        })
    }
}
