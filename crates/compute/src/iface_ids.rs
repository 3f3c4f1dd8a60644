//! Binding by `external_ids:iface-id`: the way OpenStack and libvirt plug
//! VMs. The VM's port keeps whatever name its virtualization gave it
//! (`vnet7`, `tap...`) and carries the instance id in the Interface's
//! `external_ids:iface-id`. OpenFlow does not report `external_ids`, so
//! flowgate reads them from the Open vSwitch database of every hypervisor
//! whose driver is `external`, polling, and hands the data plane which port
//! stands for which instance.

use std::collections::BTreeMap;
use std::time::Duration;

use model::DriverKind;
use store::Store;
use tokio::sync::watch;

use crate::cmd::{self, CommandError};

/// How often each external hypervisor's database is read.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps `tx` equal to the `iface-id`s of every external hypervisor's
/// interfaces (port name -> iface-id, per hypervisor name), until every receiver is gone. A database that cannot be
/// read keeps its last known ports (and is logged once per failure streak).
pub async fn watch_iface_ids(
    store: Store,
    tx: watch::Sender<BTreeMap<String, BTreeMap<String, String>>>,
    interval: Duration,
) {
    let mut failing: BTreeMap<String, bool> = BTreeMap::new();
    let mut first_reading = true;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if tx.is_closed() {
            return;
        }
        let hypervisors: Vec<(String, Option<String>)> = store
            .read()
            .hypervisors()
            .filter(|h| h.driver == DriverKind::External)
            .map(|h| (h.name.clone(), h.ovsdb.clone()))
            .collect();
        let mut next = BTreeMap::new();
        for (name, ovsdb) in hypervisors {
            match read_iface_ids(ovsdb.as_deref()).await {
                Ok(ids) => {
                    if failing.remove(&name).is_some() {
                        tracing::info!(hypervisor = %name, "Open vSwitch database readable again");
                    }
                    next.insert(name, ids);
                }
                Err(err) => {
                    if failing.insert(name.clone(), true).is_none() {
                        tracing::warn!(hypervisor = %name, error = %err, "cannot read interface iface-ids");
                    }
                    if let Some(known) = tx.borrow().get(&name) {
                        next.insert(name, known.clone());
                    }
                }
            }
        }
        // The first reading is always sent: the data plane waits for it
        // after a restart.
        let first = std::mem::replace(&mut first_reading, false);
        tx.send_if_modified(|current| {
            let changed = first || *current != next;
            if changed {
                *current = next;
            }
            changed
        });
    }
}

/// Reads port name -> `iface-id` from one Open vSwitch database (`None`:
/// the system's).
pub async fn read_iface_ids(ovsdb: Option<&str>) -> Result<BTreeMap<String, String>, CommandError> {
    let db = ovsdb.map(|db| format!("--db={db}"));
    let mut args: Vec<&str> = vec!["--timeout=5", "--format=json", "--columns=name,external_ids"];
    args.extend(db.as_deref());
    args.extend(["list", "Interface"]);
    let text = cmd::run("ovs-vsctl", &args).await?;
    parse_iface_ids(&text).map_err(|detail| CommandError {
        command: format!("ovs-vsctl {}", args.join(" ")),
        detail,
    })
}

/// Parses `ovs-vsctl --format=json --columns=name,external_ids list
/// Interface`: `{"headings": [...], "data": [[name, ["map", [[k, v],
/// ...]]], ...]}`.
fn parse_iface_ids(text: &str) -> Result<BTreeMap<String, String>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("unreadable output: {e}"))?;
    let rows = value
        .get("data")
        .and_then(|d| d.as_array())
        .ok_or("no \"data\" in the output")?;
    let mut ids = BTreeMap::new();
    for row in rows {
        let (Some(name), Some(map)) = (
            row.get(0).and_then(|n| n.as_str()),
            row.get(1).and_then(|m| m.get(1)).and_then(|m| m.as_array()),
        ) else {
            continue;
        };
        let iface_id = map.iter().find_map(|pair| match (pair.get(0), pair.get(1)) {
            (Some(k), Some(v)) if k.as_str() == Some("iface-id") => v.as_str(),
            _ => None,
        });
        if let Some(id) = iface_id {
            ids.insert(name.to_owned(), id.to_owned());
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iface_ids_and_skips_ports_without_one() {
        let text = r#"{"data":[["br0",["map",[]]],["vnet7",["map",[["attached-mac","52:54:00:aa:bb:cc"],["iface-id","i-0123456789abcdef0"]]]]],"headings":["name","external_ids"]}"#;
        let ids = parse_iface_ids(text).unwrap();
        assert_eq!(ids.len(), 1);
        assert_eq!(ids["vnet7"], "i-0123456789abcdef0");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_iface_ids("not json").is_err());
        assert!(parse_iface_ids("{}").is_err());
    }
}
