//! The whole model in memory: every object, per-account maps and the indexes
//! EC2's rules need, plus a journal of changes so that a mutation can be
//! persisted as one transaction (or rolled back when it fails).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, AllocationId, GroupId, ImageId, InstanceId, PoolId, RuleId, SubnetId};
use crate::objects::{
    AccessKey, Account, Address, Hypervisor, Image, Instance, MacAddr, Network, PublicPool, SecurityGroup,
    Tag,
};

/// The kinds of stored objects, in the order they must be loaded (owners first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// [`Account`]
    Account,
    /// [`AccessKey`]
    AccessKey,
    /// [`Network`]
    Network,
    /// [`PublicPool`]
    Pool,
    /// [`Image`]
    Image,
    /// [`Hypervisor`]
    Hypervisor,
    /// [`SecurityGroup`]
    Group,
    /// [`Instance`]
    Instance,
    /// [`Address`]
    Address,
    /// [`Tag`]
    Tag,
}

impl Kind {
    /// Every kind, owners first.
    pub const ALL: [Kind; 10] = [
        Kind::Account,
        Kind::AccessKey,
        Kind::Network,
        Kind::Pool,
        Kind::Image,
        Kind::Hypervisor,
        Kind::Group,
        Kind::Instance,
        Kind::Address,
        Kind::Tag,
    ];

    /// The kind's name in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Account => "account",
            Kind::AccessKey => "access_key",
            Kind::Network => "network",
            Kind::Pool => "pool",
            Kind::Image => "image",
            Kind::Hypervisor => "hypervisor",
            Kind::Group => "security_group",
            Kind::Instance => "instance",
            Kind::Address => "address",
            Kind::Tag => "tag",
        }
    }

    /// The kind stored under `name`.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// One stored object of any kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
// Objects are built once per change and moved, not copied in bulk: boxing
// the larger variants would cost an allocation for no gain.
#[allow(clippy::large_enum_variant)]
pub enum Object {
    Account(Account),
    AccessKey(AccessKey),
    Network(Network),
    Pool(PublicPool),
    Image(Image),
    Hypervisor(Hypervisor),
    Group(SecurityGroup),
    Instance(Instance),
    Address(Address),
    Tag(Tag),
}

impl Object {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Account(_) => Kind::Account,
            Object::AccessKey(_) => Kind::AccessKey,
            Object::Network(_) => Kind::Network,
            Object::Pool(_) => Kind::Pool,
            Object::Image(_) => Kind::Image,
            Object::Hypervisor(_) => Kind::Hypervisor,
            Object::Group(_) => Kind::Group,
            Object::Instance(_) => Kind::Instance,
            Object::Address(_) => Kind::Address,
            Object::Tag(_) => Kind::Tag,
        }
    }

    /// Its id, unique within its kind.
    pub fn id(&self) -> String {
        match self {
            Object::Account(a) => a.id.to_string(),
            Object::AccessKey(k) => k.access_key_id.clone(),
            Object::Network(n) => n.id.to_string(),
            Object::Pool(p) => p.id.to_string(),
            Object::Image(i) => i.id.to_string(),
            Object::Hypervisor(h) => h.name.clone(),
            Object::Group(g) => g.id.to_string(),
            Object::Instance(i) => i.id.to_string(),
            Object::Address(a) => a.allocation_id.to_string(),
            Object::Tag(t) => Tag::storage_id(&t.resource_id, &t.key),
        }
    }

    /// The account that owns it; `None` for the operator's objects.
    pub fn account_id(&self) -> Option<&AccountId> {
        match self {
            Object::Account(a) => Some(&a.id),
            Object::AccessKey(k) => Some(&k.account_id),
            Object::Group(g) => Some(&g.account_id),
            Object::Instance(i) => Some(&i.account_id),
            Object::Address(a) => Some(&a.account_id),
            Object::Tag(t) => Some(&t.account_id),
            Object::Network(_) | Object::Pool(_) | Object::Image(_) | Object::Hypervisor(_) => None,
        }
    }

    /// A second key the store keeps unique (a public IP is held once, a
    /// group name once per account, ...), so that a database shared by
    /// several nodes refuses what one node's memory would have refused.
    pub fn unique_key(&self) -> Option<String> {
        match self {
            Object::Account(a) => Some(a.name.clone()),
            Object::Image(i) => Some(i.name.clone()),
            Object::Group(g) => Some(format!("{}/{}", g.account_id, g.name)),
            Object::Address(a) => Some(a.public_ip.to_string()),
            Object::Instance(i) if i.state.is_live() => Some(format!("{}/{}", i.subnet_id, i.private_ip)),
            _ => None,
        }
    }
}

/// One object changed: what it was and what it is now (`None` = absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The object's kind.
    pub kind: Kind,
    /// The object's id.
    pub id: String,
    /// Before the change.
    pub before: Option<Object>,
    /// After the change.
    pub after: Option<Object>,
}

/// Everything one account owns, kept together so that isolation between
/// accounts holds by construction: a lookup starts from the caller's account.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The account.
    pub account: Account,
    /// Its security groups by id.
    pub groups: BTreeMap<GroupId, SecurityGroup>,
    /// Group ids by name.
    pub group_names: HashMap<String, GroupId>,
    /// The group each rule belongs to.
    pub rules: HashMap<RuleId, GroupId>,
    /// Its Elastic IPs by allocation id.
    pub addresses: BTreeMap<AllocationId, Address>,
    /// Its instances by id.
    pub instances: BTreeMap<InstanceId, Instance>,
    /// Tags: resource id -> key -> value.
    pub tags: BTreeMap<String, BTreeMap<String, String>>,
}

impl Tenant {
    fn new(account: Account) -> Self {
        Tenant {
            account,
            groups: BTreeMap::new(),
            group_names: HashMap::new(),
            rules: HashMap::new(),
            addresses: BTreeMap::new(),
            instances: BTreeMap::new(),
            tags: BTreeMap::new(),
        }
    }

    /// The tags of a resource, if any.
    pub fn tags_of(&self, resource_id: &str) -> Option<&BTreeMap<String, String>> {
        self.tags.get(resource_id)
    }

    /// The group named `name`.
    pub fn group_by_name(&self, name: &str) -> Option<&SecurityGroup> {
        self.group_names.get(name).and_then(|id| self.groups.get(id))
    }
}

/// The model: every object, indexed. Clone is deep (the store keeps a
/// committed copy for readers and a working copy for the writer).
#[derive(Debug, Clone, Default)]
pub struct State {
    tenants: BTreeMap<AccountId, Tenant>,
    account_names: HashMap<String, AccountId>,
    access_keys: HashMap<String, AccessKey>,
    networks: BTreeMap<SubnetId, Network>,
    pools: BTreeMap<PoolId, PublicPool>,
    images: BTreeMap<ImageId, Image>,
    image_names: HashMap<String, ImageId>,
    hypervisors: BTreeMap<String, Hypervisor>,
    public_ips: HashMap<Ipv4Addr, (AccountId, AllocationId)>,
    private_ips: HashMap<(SubnetId, Ipv4Addr), InstanceId>,
    macs: HashSet<MacAddr>,
    interface_names: HashSet<String>,
    instance_owners: HashMap<InstanceId, AccountId>,
    group_owners: HashMap<GroupId, AccountId>,
    address_owners: HashMap<AllocationId, AccountId>,
    journal: Vec<Change>,
}

impl State {
    /// An empty model.
    pub fn new() -> Self {
        State::default()
    }

    /// Builds a model from stored objects (in any order).
    pub fn from_objects(mut objects: Vec<Object>) -> Self {
        objects.sort_by_key(Object::kind);
        let mut state = State::new();
        for object in objects {
            state.raw_put(object);
        }
        state
    }

    // ----- reads -----

    /// Every account.
    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.values()
    }

    /// The account `id` with everything it owns.
    pub fn tenant(&self, id: &AccountId) -> Option<&Tenant> {
        self.tenants.get(id)
    }

    /// The account named `name`.
    pub fn account_by_name(&self, name: &str) -> Option<&Account> {
        self.account_names
            .get(name)
            .and_then(|id| self.tenants.get(id))
            .map(|t| &t.account)
    }

    /// An access key by id.
    pub fn access_key(&self, access_key_id: &str) -> Option<&AccessKey> {
        self.access_keys.get(access_key_id)
    }

    /// Every access key.
    pub fn access_keys(&self) -> impl Iterator<Item = &AccessKey> {
        self.access_keys.values()
    }

    /// Every private network.
    pub fn networks(&self) -> impl Iterator<Item = &Network> {
        self.networks.values()
    }

    /// Every public pool.
    pub fn pools(&self) -> impl Iterator<Item = &PublicPool> {
        self.pools.values()
    }

    /// Every image.
    pub fn images(&self) -> impl Iterator<Item = &Image> {
        self.images.values()
    }

    /// An image by id.
    pub fn image(&self, id: &ImageId) -> Option<&Image> {
        self.images.get(id)
    }

    /// An image by name.
    pub fn image_by_name(&self, name: &str) -> Option<&Image> {
        self.image_names.get(name).and_then(|id| self.images.get(id))
    }

    /// Every hypervisor.
    pub fn hypervisors(&self) -> impl Iterator<Item = &Hypervisor> {
        self.hypervisors.values()
    }

    /// Who holds a public IP.
    pub fn public_ip_holder(&self, ip: Ipv4Addr) -> Option<&(AccountId, AllocationId)> {
        self.public_ips.get(&ip)
    }

    /// Whether a private IP of a network is held by a live instance.
    pub fn private_ip_in_use(&self, subnet: &SubnetId, ip: Ipv4Addr) -> bool {
        self.private_ips.contains_key(&(subnet.clone(), ip))
    }

    /// Whether a MAC is held by a live instance.
    pub fn mac_in_use(&self, mac: MacAddr) -> bool {
        self.macs.contains(&mac)
    }

    /// Whether an interface name is held by a live instance.
    pub fn interface_in_use(&self, name: &str) -> bool {
        self.interface_names.contains(name)
    }

    /// The owner of an instance.
    pub fn instance_owner(&self, id: &InstanceId) -> Option<&AccountId> {
        self.instance_owners.get(id)
    }

    /// Every object, owners first (for a full dump).
    pub fn objects(&self) -> Vec<Object> {
        let mut out = Vec::new();
        for tenant in self.tenants.values() {
            out.push(Object::Account(tenant.account.clone()));
        }
        let mut keys: Vec<&AccessKey> = self.access_keys.values().collect();
        keys.sort_by(|a, b| a.access_key_id.cmp(&b.access_key_id));
        out.extend(keys.into_iter().cloned().map(Object::AccessKey));
        out.extend(self.networks.values().cloned().map(Object::Network));
        out.extend(self.pools.values().cloned().map(Object::Pool));
        out.extend(self.images.values().cloned().map(Object::Image));
        out.extend(self.hypervisors.values().cloned().map(Object::Hypervisor));
        for tenant in self.tenants.values() {
            out.extend(tenant.groups.values().cloned().map(Object::Group));
            out.extend(tenant.instances.values().cloned().map(Object::Instance));
            out.extend(tenant.addresses.values().cloned().map(Object::Address));
            for (resource, tags) in &tenant.tags {
                for (key, value) in tags {
                    out.push(Object::Tag(Tag {
                        resource_id: resource.clone(),
                        account_id: tenant.account.id.clone(),
                        key: key.clone(),
                        value: value.clone(),
                    }));
                }
            }
        }
        out
    }

    /// The owner of the resource with EC2 id `resource_id` (instance, group, address).
    pub fn resource_owner(&self, resource_id: &str) -> Option<&AccountId> {
        if let Ok(id) = InstanceId::parse(resource_id) {
            self.instance_owners.get(&id)
        } else if let Ok(id) = GroupId::parse(resource_id) {
            self.group_owners.get(&id)
        } else if let Ok(id) = AllocationId::parse(resource_id) {
            self.address_owners.get(&id)
        } else {
            None
        }
    }

    /// Looks an object up by kind and id.
    pub fn get(&self, kind: Kind, id: &str) -> Option<Object> {
        match kind {
            Kind::Account => {
                let account_id = AccountId::parse(id).ok()?;
                self.tenants
                    .get(&account_id)
                    .map(|t| Object::Account(t.account.clone()))
            }
            Kind::AccessKey => self.access_keys.get(id).cloned().map(Object::AccessKey),
            Kind::Network => self
                .networks
                .get(&SubnetId::parse(id).ok()?)
                .cloned()
                .map(Object::Network),
            Kind::Pool => self
                .pools
                .get(&PoolId::parse(id).ok()?)
                .cloned()
                .map(Object::Pool),
            Kind::Image => self
                .images
                .get(&ImageId::parse(id).ok()?)
                .cloned()
                .map(Object::Image),
            Kind::Hypervisor => self.hypervisors.get(id).cloned().map(Object::Hypervisor),
            Kind::Group => {
                let group_id = GroupId::parse(id).ok()?;
                let owner = self.group_owners.get(&group_id)?;
                self.tenants
                    .get(owner)?
                    .groups
                    .get(&group_id)
                    .cloned()
                    .map(Object::Group)
            }
            Kind::Instance => {
                let instance_id = InstanceId::parse(id).ok()?;
                let owner = self.instance_owners.get(&instance_id)?;
                self.tenants
                    .get(owner)?
                    .instances
                    .get(&instance_id)
                    .cloned()
                    .map(Object::Instance)
            }
            Kind::Address => {
                let allocation_id = AllocationId::parse(id).ok()?;
                let owner = self.address_owners.get(&allocation_id)?;
                self.tenants
                    .get(owner)?
                    .addresses
                    .get(&allocation_id)
                    .cloned()
                    .map(Object::Address)
            }
            Kind::Tag => {
                let (resource, key) = id.split_once('/')?;
                let owner = self.resource_owner(resource)?;
                let tenant = self.tenants.get(owner)?;
                let value = tenant.tags.get(resource)?.get(key)?;
                Some(Object::Tag(Tag {
                    resource_id: resource.to_string(),
                    account_id: owner.clone(),
                    key: key.to_string(),
                    value: value.clone(),
                }))
            }
        }
    }

    // ----- journaled writes -----

    /// Stores `object` (insert or replace) and journals the change.
    pub fn put(&mut self, object: Object) {
        let (kind, id) = (object.kind(), object.id());
        let before = self.raw_remove(kind, &id);
        self.raw_put(object.clone());
        self.journal.push(Change {
            kind,
            id,
            before,
            after: Some(object),
        });
    }

    /// Removes an object and journals the change (nothing if absent).
    pub fn remove(&mut self, kind: Kind, id: &str) {
        if let Some(before) = self.raw_remove(kind, id) {
            self.journal.push(Change {
                kind,
                id: id.to_string(),
                before: Some(before),
                after: None,
            });
        }
    }

    /// Takes the changes made since the last call.
    pub fn take_journal(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.journal)
    }

    /// Whether changes are pending in the journal.
    pub fn journal_len(&self) -> usize {
        self.journal.len()
    }

    /// Undoes the journaled changes after position `mark`, newest first.
    pub fn rollback_to(&mut self, mark: usize) {
        while self.journal.len() > mark {
            let Some(change) = self.journal.pop() else { break };
            self.raw_remove(change.kind, &change.id);
            if let Some(before) = change.before {
                self.raw_put(before);
            }
        }
    }

    /// Applies a change made elsewhere (by the writer, or another process)
    /// without journaling it.
    pub fn apply(&mut self, change: &Change) {
        self.raw_remove(change.kind, &change.id);
        if let Some(after) = &change.after {
            self.raw_put(after.clone());
        }
    }

    /// Sets an object to what the store holds: `Some` replaces, `None` removes.
    pub fn apply_stored(&mut self, kind: Kind, id: &str, object: Option<Object>) {
        self.raw_remove(kind, id);
        if let Some(object) = object {
            self.raw_put(object);
        }
    }

    // ----- raw writes: keep every index in step -----

    fn raw_put(&mut self, object: Object) {
        match object {
            Object::Account(account) => {
                self.account_names
                    .insert(account.name.clone(), account.id.clone());
                match self.tenants.get_mut(&account.id) {
                    Some(tenant) => tenant.account = account,
                    None => {
                        self.tenants.insert(account.id.clone(), Tenant::new(account));
                    }
                }
            }
            Object::AccessKey(key) => {
                self.access_keys.insert(key.access_key_id.clone(), key);
            }
            Object::Network(network) => {
                self.networks.insert(network.id.clone(), network);
            }
            Object::Pool(pool) => {
                self.pools.insert(pool.id.clone(), pool);
            }
            Object::Image(image) => {
                self.image_names.insert(image.name.clone(), image.id.clone());
                self.images.insert(image.id.clone(), image);
            }
            Object::Hypervisor(hv) => {
                self.hypervisors.insert(hv.name.clone(), hv);
            }
            Object::Group(group) => {
                let Some(tenant) = self.tenants.get_mut(&group.account_id) else {
                    return;
                };
                tenant.group_names.insert(group.name.clone(), group.id.clone());
                for rule in group.ingress.iter().chain(&group.egress) {
                    tenant.rules.insert(rule.id.clone(), group.id.clone());
                }
                self.group_owners
                    .insert(group.id.clone(), group.account_id.clone());
                tenant.groups.insert(group.id.clone(), group);
            }
            Object::Instance(instance) => {
                let Some(tenant) = self.tenants.get_mut(&instance.account_id) else {
                    return;
                };
                if instance.state.is_live() {
                    self.private_ips.insert(
                        (instance.subnet_id.clone(), instance.private_ip),
                        instance.id.clone(),
                    );
                    self.macs.insert(instance.mac);
                    self.interface_names.insert(instance.interface_name.clone());
                }
                self.instance_owners
                    .insert(instance.id.clone(), instance.account_id.clone());
                tenant.instances.insert(instance.id.clone(), instance);
            }
            Object::Address(address) => {
                let Some(tenant) = self.tenants.get_mut(&address.account_id) else {
                    return;
                };
                self.public_ips.insert(
                    address.public_ip,
                    (address.account_id.clone(), address.allocation_id.clone()),
                );
                self.address_owners
                    .insert(address.allocation_id.clone(), address.account_id.clone());
                tenant.addresses.insert(address.allocation_id.clone(), address);
            }
            Object::Tag(tag) => {
                let Some(tenant) = self.tenants.get_mut(&tag.account_id) else {
                    return;
                };
                tenant
                    .tags
                    .entry(tag.resource_id)
                    .or_default()
                    .insert(tag.key, tag.value);
            }
        }
    }

    fn raw_remove(&mut self, kind: Kind, id: &str) -> Option<Object> {
        let removed = self.get(kind, id)?;
        match &removed {
            Object::Account(account) => {
                self.account_names.remove(&account.name);
                self.tenants.remove(&account.id);
            }
            Object::AccessKey(key) => {
                self.access_keys.remove(&key.access_key_id);
            }
            Object::Network(network) => {
                self.networks.remove(&network.id);
            }
            Object::Pool(pool) => {
                self.pools.remove(&pool.id);
            }
            Object::Image(image) => {
                self.image_names.remove(&image.name);
                self.images.remove(&image.id);
            }
            Object::Hypervisor(hv) => {
                self.hypervisors.remove(&hv.name);
            }
            Object::Group(group) => {
                if let Some(tenant) = self.tenants.get_mut(&group.account_id) {
                    tenant.group_names.remove(&group.name);
                    for rule in group.ingress.iter().chain(&group.egress) {
                        tenant.rules.remove(&rule.id);
                    }
                    tenant.groups.remove(&group.id);
                }
                self.group_owners.remove(&group.id);
            }
            Object::Instance(instance) => {
                if instance.state.is_live() {
                    self.private_ips
                        .remove(&(instance.subnet_id.clone(), instance.private_ip));
                    self.macs.remove(&instance.mac);
                    self.interface_names.remove(&instance.interface_name);
                }
                self.instance_owners.remove(&instance.id);
                if let Some(tenant) = self.tenants.get_mut(&instance.account_id) {
                    tenant.instances.remove(&instance.id);
                }
            }
            Object::Address(address) => {
                self.public_ips.remove(&address.public_ip);
                self.address_owners.remove(&address.allocation_id);
                if let Some(tenant) = self.tenants.get_mut(&address.account_id) {
                    tenant.addresses.remove(&address.allocation_id);
                }
            }
            Object::Tag(tag) => {
                if let Some(tenant) = self.tenants.get_mut(&tag.account_id)
                    && let Some(tags) = tenant.tags.get_mut(&tag.resource_id)
                {
                    tags.remove(&tag.key);
                    if tags.is_empty() {
                        tenant.tags.remove(&tag.resource_id);
                    }
                }
            }
        }
        Some(removed)
    }

    /// Direct mutable access to a tenant, for reads inside the model's operations.
    pub(crate) fn tenant_ref(&self, id: &AccountId) -> Option<&Tenant> {
        self.tenants.get(id)
    }
}
