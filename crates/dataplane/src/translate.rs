//! From the store's model and what the switches report to the compiler's
//! input: which hypervisor is which bridge, which OpenFlow port each
//! instance is plugged into (its binding), what each security group rule
//! means. Pure: changes and switch reports in, compiler updates and binding
//! changes out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use compiler::{Cidr, Compiler, PublicGateway, Update};
use model::{
    Change, Hypervisor, Instance, InstanceState, Object, Permission, Protocol, PublicPool, SecurityGroup,
    Source, State,
};
use openflow::{MacAddr, Port, PortNo};

/// What one connected bridge reports: its name and its ports by name.
#[derive(Debug, Clone, Default)]
struct SwitchPorts {
    /// The name of its LOCAL port, which is the bridge's name.
    bridge: Option<String>,
    ports: BTreeMap<String, u32>,
}

/// Whether an instance's port appeared or went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingChange {
    /// The instance.
    pub instance: String,
    /// Its port now, if plugged in.
    pub port: Option<(u64, u32)>,
}

/// The translation state.
#[derive(Debug, Default)]
pub struct Translator {
    compiler: Compiler,
    hypervisors: BTreeMap<String, Hypervisor>,
    switches: HashMap<u64, SwitchPorts>,
    /// Live instances placed on a hypervisor, by id.
    instances: BTreeMap<String, Instance>,
    pools: BTreeMap<String, PublicPool>,
    gateway_mac: Option<MacAddr>,
    static_gateway_mac: Option<MacAddr>,
    bound: BTreeMap<String, (u64, u32)>,
    /// Per hypervisor, instance id -> the port whose
    /// `external_ids:iface-id` names it (external hypervisors).
    iface_ports: BTreeMap<String, BTreeMap<String, String>>,
    /// Instances whose binding may have changed since the last flush.
    rebind: BTreeSet<String>,
}

impl Translator {
    /// A translator; `static_gateway_mac` is used for the public gateway
    /// until (or instead of) resolving it with ARP.
    pub fn new(static_gateway_mac: Option<MacAddr>) -> Translator {
        // The controller keeps every flow it is given; the compiler only
        // needs fingerprints to tell what changed.
        let mut compiler = Compiler::new();
        compiler.forget_flows();
        Translator {
            compiler,
            static_gateway_mac,
            ..Translator::default()
        }
    }

    /// Loads a whole model (at start).
    pub fn load(&mut self, state: &State) {
        let objects = state.objects();
        let mut compiler = std::mem::take(&mut self.compiler);
        compiler.bulk_load(|c| {
            for object in objects {
                self.apply_object(c, None, Some(&object));
            }
        });
        self.compiler = compiler;
    }

    /// Applies one committed change.
    pub fn apply(&mut self, change: &Change) {
        let mut compiler = std::mem::take(&mut self.compiler);
        self.apply_object(&mut compiler, change.before.as_ref(), change.after.as_ref());
        self.compiler = compiler;
    }

    fn apply_object(&mut self, c: &mut Compiler, before: Option<&Object>, after: Option<&Object>) {
        match (before, after) {
            (_, Some(Object::Hypervisor(h))) => {
                self.hypervisors.insert(h.name.clone(), h.clone());
                self.refresh_hypervisor(c, &h.name);
            }
            (Some(Object::Hypervisor(h)), None) => {
                self.hypervisors.remove(&h.name);
                c.remove_hypervisor(&h.name);
            }
            (_, Some(Object::Network(n))) => c.upsert_network(network(n)),
            (Some(Object::Network(n)), None) => c.remove_network(n.id.as_str()),
            (_, Some(Object::Pool(p))) => {
                self.pools.insert(p.id.to_string(), p.clone());
                self.refresh_gateway(c);
            }
            (Some(Object::Pool(p)), None) => {
                self.pools.remove(p.id.as_str());
                self.refresh_gateway(c);
            }
            (_, Some(Object::Group(g))) => c.upsert_group(group(g)),
            (Some(Object::Group(g)), None) => c.remove_group(g.id.as_str()),
            (_, Some(Object::Address(a))) => c.upsert_address(address(a)),
            (Some(Object::Address(a)), None) => c.remove_address(a.allocation_id.as_str()),
            (_, Some(Object::Instance(i))) => self.upsert_instance(c, i),
            (Some(Object::Instance(i)), None) => self.remove_instance(c, i.id.as_str()),
            _ => {}
        }
    }

    fn upsert_instance(&mut self, c: &mut Compiler, inst: &Instance) {
        let id = inst.id.to_string();
        // Flows only for instances that can run: shutting down stops
        // traffic at once, before the driver has finished.
        let live = matches!(inst.state, InstanceState::Pending | InstanceState::Running);
        if !live || inst.hypervisor.is_none() {
            self.remove_instance(c, &id);
            return;
        }
        self.instances.insert(id.clone(), inst.clone());
        self.rebind.insert(id.clone());
        c.upsert_instance(self.compiler_instance(inst));
    }

    fn remove_instance(&mut self, c: &mut Compiler, id: &str) {
        if self.instances.remove(id).is_some() {
            c.remove_instance(id);
        }
        self.rebind.insert(id.to_string());
    }

    /// The bridge of a hypervisor, once it has connected: its datapath id
    /// (configured, or learned from the bridge's name) and uplink port.
    fn hypervisor_bridge(&self, hv: &Hypervisor) -> Option<(u64, u32)> {
        let dpid = match hv.datapath_id {
            Some(d) => d,
            None => {
                let name = hv.bridge.as_deref()?;
                *self
                    .switches
                    .iter()
                    .find(|(_, s)| s.bridge.as_deref() == Some(name))?
                    .0
            }
        };
        let uplink = *self.switches.get(&dpid)?.ports.get(&hv.uplink)?;
        Some((dpid, uplink))
    }

    /// The port an instance is plugged into on its hypervisor's bridge: the
    /// one with its interface name, or else the one whose `iface-id` names
    /// it.
    fn binding(&self, inst: &Instance) -> Option<(u64, u32)> {
        let name = inst.hypervisor.as_deref()?;
        let hv = self.hypervisors.get(name)?;
        let (dpid, _) = self.hypervisor_bridge(hv)?;
        let ports = &self.switches.get(&dpid)?.ports;
        let port = ports.get(&inst.interface_name).or_else(|| {
            let port_name = self.iface_ports.get(name)?.get(inst.id.as_str())?;
            ports.get(port_name)
        })?;
        Some((dpid, *port))
    }

    /// The ports that carry an `external_ids:iface-id`, per hypervisor name
    /// (port name -> iface-id), as read from the hypervisors' databases.
    pub fn set_iface_ids(&mut self, ids: &BTreeMap<String, BTreeMap<String, String>>) {
        let mut next: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (hv, ports) in ids {
            let by_instance = next.entry(hv.clone()).or_default();
            for (port, iface_id) in ports {
                by_instance.insert(iface_id.clone(), port.clone());
            }
        }
        let changed: Vec<String> = next
            .keys()
            .chain(self.iface_ports.keys())
            .filter(|hv| next.get(*hv) != self.iface_ports.get(*hv))
            .cloned()
            .collect();
        self.iface_ports = next;
        let mut compiler = std::mem::take(&mut self.compiler);
        for hv in changed {
            self.refresh_hypervisor(&mut compiler, &hv);
        }
        self.compiler = compiler;
    }

    fn compiler_instance(&self, inst: &Instance) -> compiler::Instance {
        instance(inst, self.binding(inst).map(|(_, p)| p))
    }

    /// Re-derives a hypervisor's bridge and its instances' ports.
    fn refresh_hypervisor(&mut self, c: &mut Compiler, name: &str) {
        let Some(hv) = self.hypervisors.get(name) else {
            return;
        };
        match self.hypervisor_bridge(hv) {
            Some((datapath_id, uplink_port)) => c.upsert_hypervisor(compiler::Hypervisor {
                name: name.to_string(),
                datapath_id,
                uplink_port,
            }),
            None => c.remove_hypervisor(name),
        }
        let on_it: Vec<Instance> = self
            .instances
            .values()
            .filter(|i| i.hypervisor.as_deref() == Some(name))
            .cloned()
            .collect();
        for inst in on_it {
            self.rebind.insert(inst.id.to_string());
            c.upsert_instance(self.compiler_instance(&inst));
        }
    }

    fn refresh_gateway(&mut self, c: &mut Compiler) {
        let gateway = self.public_gateway_ip().map(|ip| PublicGateway {
            ip,
            mac: self.gateway_mac.or(self.static_gateway_mac),
        });
        c.set_public_gateway(gateway);
    }

    /// The public network's gateway (the first pool's; flowgate routes
    /// every Elastic IP through one gateway).
    pub fn public_gateway_ip(&self) -> Option<Ipv4Addr> {
        self.pools.values().next().map(|p| p.gateway)
    }

    /// Whether the gateway's MAC is known (resolved or configured).
    pub fn gateway_mac(&self) -> Option<MacAddr> {
        self.gateway_mac.or(self.static_gateway_mac)
    }

    /// Records the gateway's MAC as ARP resolved it.
    pub fn set_gateway_mac(&mut self, mac: MacAddr) {
        if self.gateway_mac != Some(mac) {
            self.gateway_mac = Some(mac);
            let mut compiler = std::mem::take(&mut self.compiler);
            self.refresh_gateway(&mut compiler);
            self.compiler = compiler;
        }
    }

    /// The hypervisors whose bridge is `dpid`.
    fn hypervisors_on(&self, dpid: u64) -> Vec<String> {
        self.hypervisors
            .values()
            .filter(|h| match h.datapath_id {
                Some(d) => d == dpid,
                None => {
                    h.bridge.is_some()
                        && h.bridge.as_deref() == self.switches.get(&dpid).and_then(|s| s.bridge.as_deref())
                }
            })
            .map(|h| h.name.clone())
            .collect()
    }

    fn refresh_switch(&mut self, dpid: u64) {
        let names = self.hypervisors_on(dpid);
        let mut compiler = std::mem::take(&mut self.compiler);
        for name in names {
            self.refresh_hypervisor(&mut compiler, &name);
        }
        self.compiler = compiler;
    }

    /// A bridge connected with these ports.
    pub fn switch_connected(&mut self, dpid: u64, ports: &[Port]) {
        let mut view = SwitchPorts::default();
        for p in ports {
            if p.port_no == PortNo::LOCAL {
                view.bridge = Some(p.name.clone());
            } else {
                view.ports.insert(p.name.clone(), p.port_no.0);
            }
        }
        self.switches.insert(dpid, view);
        self.refresh_switch(dpid);
    }

    /// A port of a bridge was added (`present`) or removed.
    pub fn switch_port(&mut self, dpid: u64, port: &Port, present: bool) {
        let view = self.switches.entry(dpid).or_default();
        if port.port_no == PortNo::LOCAL {
            view.bridge = present.then(|| port.name.clone());
        } else if present {
            view.ports.insert(port.name.clone(), port.port_no.0);
        } else {
            view.ports.remove(&port.name);
        }
        let names = self.hypervisors_on(dpid);
        let uplink = names
            .iter()
            .any(|n| self.hypervisors.get(n).is_some_and(|h| h.uplink == port.name));
        if port.port_no == PortNo::LOCAL || uplink {
            // The bridge's identity or its uplink: everything on it.
            self.refresh_switch(dpid);
            return;
        }
        // An instance's port: only the instances it binds (re-deriving
        // every instance of the bridge on each port made plugging N
        // instances cost O(N^2)).
        let iface_instances: Vec<&str> = names
            .iter()
            .filter_map(|n| self.iface_ports.get(n))
            .flat_map(|ports| {
                ports
                    .iter()
                    .filter(|(_, p)| **p == port.name)
                    .map(|(i, _)| i.as_str())
            })
            .collect();
        let affected: Vec<Instance> = self
            .instances
            .values()
            .filter(|i| i.hypervisor.as_ref().is_some_and(|h| names.contains(h)))
            .filter(|i| i.interface_name == port.name || iface_instances.contains(&i.id.as_str()))
            .cloned()
            .collect();
        let mut compiler = std::mem::take(&mut self.compiler);
        for inst in affected {
            self.rebind.insert(inst.id.to_string());
            compiler.upsert_instance(self.compiler_instance(&inst));
        }
        self.compiler = compiler;
    }

    /// The datapath id and uplink port of a hypervisor, if connected.
    pub fn hypervisor_location(&self, name: &str) -> Option<(u64, u32)> {
        self.hypervisor_bridge(self.hypervisors.get(name)?)
    }

    /// Every connected hypervisor's (datapath id, uplink port).
    pub fn connected_hypervisors(&self) -> Vec<(u64, u32)> {
        self.hypervisors
            .values()
            .filter_map(|h| self.hypervisor_bridge(h))
            .collect()
    }

    /// Compiles what changed; also reports instances whose port appeared
    /// or disappeared.
    pub fn flush(&mut self) -> (Vec<Update>, Vec<BindingChange>) {
        let mut updates = Vec::new();
        let bindings = self.flush_each(|u| updates.push(u));
        updates.sort_by_key(|u| (u.datapath_id, u.cookie));
        (updates, bindings)
    }

    /// Like [`flush`](Translator::flush), handing each update to `each` as
    /// it is compiled (see `Compiler::flush_each`).
    pub fn flush_each(&mut self, each: impl FnMut(Update)) -> Vec<BindingChange> {
        let mut changes = Vec::new();
        for id in std::mem::take(&mut self.rebind) {
            let now = self.instances.get(&id).and_then(|i| self.binding(i));
            let before = self.bound.get(&id).copied();
            if now != before {
                match now {
                    Some(b) => self.bound.insert(id.clone(), b),
                    None => self.bound.remove(&id),
                };
                changes.push(BindingChange {
                    instance: id,
                    port: now,
                });
            }
        }
        self.compiler.flush_each(each);
        changes
    }

    /// The compiler (for listing flows by owner).
    pub fn compiler(&self) -> &Compiler {
        &self.compiler
    }

    /// The public address and location of an Elastic IP, when its instance
    /// is plugged in: (datapath id, uplink port, address).
    pub fn address_location(&self, allocation_id: &str) -> Option<(u64, u32, Ipv4Addr)> {
        self.compiler.address_location(allocation_id)
    }
}

/// The compiler's view of a whole model, for tools that reason about it
/// without switches (`flowgate trace`): bridges, ports and the public
/// gateway's MAC are what the switches would report, so they are unknown
/// here.
#[derive(Debug, Clone, Default)]
pub struct PolicyInputs {
    /// Hypervisors, with datapath id and uplink port 0 where unknown.
    pub hypervisors: Vec<compiler::Hypervisor>,
    /// Private networks.
    pub networks: Vec<compiler::Network>,
    /// Instances that can run (pending or running, placed); running ones
    /// get port 0 as a stand-in for "plugged in", the others none.
    pub instances: Vec<compiler::Instance>,
    /// Security groups of every account.
    pub groups: Vec<compiler::Group>,
    /// Elastic IPs of every account.
    pub addresses: Vec<compiler::Address>,
    /// The public gateway (the first pool's) and its network.
    pub public_gateway: Option<(Ipv4Addr, Cidr)>,
}

/// The compiler's view of `state` (see [`PolicyInputs`]).
pub fn policy_inputs(state: &State) -> PolicyInputs {
    let mut inputs = PolicyInputs::default();
    for object in state.objects() {
        match &object {
            Object::Hypervisor(h) => inputs.hypervisors.push(compiler::Hypervisor {
                name: h.name.clone(),
                datapath_id: h.datapath_id.unwrap_or(0),
                uplink_port: 0,
            }),
            Object::Network(n) => inputs.networks.push(network(n)),
            Object::Pool(p) if inputs.public_gateway.is_none() => {
                inputs.public_gateway = Some((p.gateway, Cidr::new(p.cidr.network(), p.cidr.prefix_len())));
            }
            Object::Group(g) => inputs.groups.push(group(g)),
            Object::Address(a) => inputs.addresses.push(address(a)),
            Object::Instance(i)
                if i.hypervisor.is_some()
                    && matches!(i.state, InstanceState::Pending | InstanceState::Running) =>
            {
                let plugged = (i.state == InstanceState::Running).then_some(0);
                inputs.instances.push(instance(i, plugged));
            }
            _ => {}
        }
    }
    inputs
}

fn network(n: &model::Network) -> compiler::Network {
    compiler::Network {
        id: n.id.to_string(),
        cidr: Cidr::new(n.cidr.network(), n.cidr.prefix_len()),
        gateway: n.gateway,
    }
}

fn address(a: &model::Address) -> compiler::Address {
    compiler::Address {
        allocation_id: a.allocation_id.to_string(),
        public_ip: a.public_ip,
        instance: a.association.as_ref().map(|x| x.instance_id.to_string()),
    }
}

fn instance(inst: &Instance, port: Option<u32>) -> compiler::Instance {
    compiler::Instance {
        id: inst.id.to_string(),
        hypervisor: inst.hypervisor.clone(),
        port,
        mac: MacAddr(inst.mac.0),
        ip: inst.private_ip,
        network: inst.subnet_id.to_string(),
        groups: inst.group_ids.iter().map(|g| g.to_string()).collect(),
    }
}

fn group(g: &SecurityGroup) -> compiler::Group {
    let rules = g
        .ingress
        .iter()
        .map(|r| (r, compiler::Direction::Ingress))
        .chain(g.egress.iter().map(|r| (r, compiler::Direction::Egress)))
        .map(|(r, direction)| compiler::Rule {
            id: r.id.to_string(),
            direction,
            service: service(&r.permission),
            peer: match &r.permission.source {
                Source::Cidr(net) => compiler::Peer::Cidr(Cidr::new(net.network(), net.prefix_len())),
                Source::Group { group_id, .. } => compiler::Peer::Group(group_id.to_string()),
            },
        })
        .collect();
    compiler::Group {
        id: g.id.to_string(),
        rules,
    }
}

/// EC2's protocol and port fields as a compiler service.
fn service(p: &Permission) -> compiler::Service {
    let port = |v: Option<i32>, default: u16| v.and_then(|v| u16::try_from(v).ok()).unwrap_or(default);
    let code = |v: Option<i32>| v.filter(|v| *v >= 0).and_then(|v| u8::try_from(v).ok());
    match p.protocol {
        Protocol::All => compiler::Service::All,
        Protocol::Tcp => compiler::Service::Tcp {
            from: port(p.from_port, 0),
            to: port(p.to_port, 65535),
        },
        Protocol::Udp => compiler::Service::Udp {
            from: port(p.from_port, 0),
            to: port(p.to_port, 65535),
        },
        Protocol::Icmp => compiler::Service::Icmp {
            icmp_type: code(p.from_port),
            code: code(p.to_port),
        },
        Protocol::Number(n) => compiler::Service::Protocol(n),
    }
}
