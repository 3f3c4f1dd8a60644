//! EC2's rules as operations on the [`State`]: each checks everything first
//! and then writes through the journal, so a failed operation changes
//! nothing and a successful one leaves exactly its changes to persist.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::{AdminError, Ec2Error};
use crate::ids::{
    AccountId, AllocationId, AssociationId, Entropy, GroupId, ImageId, InstanceId, PoolId, ReservationId,
    RuleId, SubnetId, generate_access_key_id, generate_secret_access_key,
};
use crate::objects::{
    AccessKey, Account, Address, Association, Domain, Hypervisor, Image, Instance, InstanceState, MacAddr,
    Network, PublicPool, SecurityGroup, Tag,
};
use crate::rule::{Direction, Permission, Protocol, Rule, Source};
use crate::state::{Kind, Object, State};

/// The name of the group every account has from the start.
pub const DEFAULT_GROUP: &str = "default";

/// The first three bytes of every MAC flowgate hands out (locally administered).
pub const MAC_PREFIX: [u8; 3] = [0x02, 0xf6, 0x67];

/// Most tags one resource may carry, as in EC2.
pub const MAX_TAGS_PER_RESOURCE: usize = 50;

/// A group named the way EC2 lets clients name it: by id or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRef {
    /// `GroupId` / `sg-…`.
    Id(GroupId),
    /// `GroupName`.
    Name(String),
}

/// An Elastic IP named by its public IP (EC2-Classic style) or allocation id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressRef {
    /// `PublicIp`.
    PublicIp(Ipv4Addr),
    /// `AllocationId`.
    Allocation(AllocationId),
}

/// A rule as a client asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRequest {
    /// What it admits.
    pub permission: Permission,
    /// Its description, if any.
    pub description: Option<String>,
}

/// What RunInstances asks for, already parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRequest {
    /// ImageId.
    pub image_id: ImageId,
    /// InstanceType (m1.small when absent).
    pub instance_type: String,
    /// MinCount.
    pub min_count: u32,
    /// MaxCount.
    pub max_count: u32,
    /// SecurityGroup.N and SecurityGroupId.N.
    pub groups: Vec<GroupRef>,
    /// SubnetId (the first network when absent).
    pub subnet_id: Option<SubnetId>,
    /// PrivateIpAddress.
    pub private_ip: Option<Ipv4Addr>,
    /// UserData (base64 as sent).
    pub user_data: Option<String>,
    /// KeyName.
    pub key_name: Option<String>,
    /// ClientToken.
    pub client_token: Option<String>,
    /// Placement.AvailabilityZone, or the configured zone.
    pub availability_zone: String,
}

fn not_found_group(reference: &GroupRef) -> Ec2Error {
    match reference {
        GroupRef::Id(id) => {
            Ec2Error::InvalidGroupNotFound(format!("The security group '{id}' does not exist"))
        }
        GroupRef::Name(name) => Ec2Error::InvalidGroupNotFound(format!(
            "The security group '{name}' does not exist in default VPC"
        )),
    }
}

impl State {
    fn tenant_or_auth(&self, account: &AccountId) -> Result<&crate::state::Tenant, Ec2Error> {
        self.tenant_ref(account).ok_or(Ec2Error::AuthFailure)
    }

    /// Resolves a group of `account` by id or name.
    pub fn resolve_group(
        &self,
        account: &AccountId,
        reference: &GroupRef,
    ) -> Result<&SecurityGroup, Ec2Error> {
        let tenant = self.tenant_or_auth(account)?;
        let found = match reference {
            GroupRef::Id(id) => tenant.groups.get(id),
            GroupRef::Name(name) => tenant.group_by_name(name),
        };
        found.ok_or_else(|| not_found_group(reference))
    }

    /// Resolves a group given in RunInstances' `SecurityGroup.N`: a name, or
    /// (as a convenience EC2-Classic clients relied on) an id when no group has that name.
    fn resolve_launch_group(&self, account: &AccountId, reference: &GroupRef) -> Result<GroupId, Ec2Error> {
        match self.resolve_group(account, reference) {
            Ok(group) => Ok(group.id.clone()),
            Err(err) => match reference {
                GroupRef::Name(name) => match GroupId::parse(name) {
                    Ok(id) => self
                        .resolve_group(account, &GroupRef::Id(id))
                        .map(|g| g.id.clone()),
                    Err(_) => Err(err),
                },
                GroupRef::Id(_) => Err(err),
            },
        }
    }

    /// Resolves an address of `account`.
    pub fn resolve_address(&self, account: &AccountId, reference: &AddressRef) -> Result<&Address, Ec2Error> {
        let tenant = self.tenant_or_auth(account)?;
        match reference {
            AddressRef::Allocation(id) => tenant
                .addresses
                .get(id)
                .ok_or_else(|| Ec2Error::InvalidAllocationIdNotFound(id.to_string())),
            AddressRef::PublicIp(ip) => match self.public_ip_holder(*ip) {
                Some((owner, id)) if owner == account => tenant
                    .addresses
                    .get(id)
                    .ok_or_else(|| Ec2Error::InvalidAddressNotFound(ip.to_string())),
                _ => Err(Ec2Error::InvalidAddressNotFound(ip.to_string())),
            },
        }
    }

    /// A live instance of `account`, or EC2's not-found error.
    pub fn resolve_instance(&self, account: &AccountId, id: &InstanceId) -> Result<&Instance, Ec2Error> {
        self.tenant_or_auth(account)?
            .instances
            .get(id)
            .ok_or_else(|| Ec2Error::InvalidInstanceIdNotFound(id.to_string()))
    }

    // ===================== operator =====================

    /// Creates an account with one access key and its `default` group.
    pub fn create_account(
        &mut self,
        name: &str,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<(Account, AccessKey), AdminError> {
        if name.is_empty() || name.len() > 64 {
            return Err(AdminError::Invalid(
                "an account name has 1 to 64 characters".into(),
            ));
        }
        if self.account_by_name(name).is_some() {
            return Err(AdminError::Duplicate {
                kind: "account",
                name: name.into(),
            });
        }
        let mut id = AccountId::generate(entropy);
        while self.tenant(&id).is_some() {
            id = AccountId::generate(entropy);
        }
        let account = Account {
            id: id.clone(),
            name: name.to_string(),
            created_ms: now_ms,
        };
        self.put(Object::Account(account.clone()));
        let group_id = GroupId::generate(entropy);
        let self_source = Source::Group {
            group_id: group_id.clone(),
            account_id: id.clone(),
        };
        let group = SecurityGroup {
            id: group_id,
            account_id: id.clone(),
            name: DEFAULT_GROUP.to_string(),
            description: "default group".to_string(),
            ingress: vec![Rule {
                id: RuleId::generate(entropy),
                permission: Permission {
                    protocol: Protocol::All,
                    from_port: None,
                    to_port: None,
                    source: self_source,
                },
                description: None,
            }],
            egress: vec![Rule {
                id: RuleId::generate(entropy),
                permission: Permission::allow_all_to_anywhere(),
                description: None,
            }],
        };
        self.put(Object::Group(group));
        let key = self.create_access_key(&id, false, now_ms, entropy)?;
        Ok((account, key))
    }

    /// Adds an access key to an account.
    pub fn create_access_key(
        &mut self,
        account: &AccountId,
        read_only: bool,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<AccessKey, AdminError> {
        if self.tenant(account).is_none() {
            return Err(AdminError::NotFound {
                kind: "account",
                name: account.to_string(),
            });
        }
        let mut access_key_id = generate_access_key_id(entropy);
        while self.access_key(&access_key_id).is_some() {
            access_key_id = generate_access_key_id(entropy);
        }
        let key = AccessKey {
            access_key_id,
            secret_access_key: generate_secret_access_key(entropy),
            account_id: account.clone(),
            read_only,
            created_ms: now_ms,
        };
        self.put(Object::AccessKey(key.clone()));
        Ok(key)
    }

    /// Deletes an access key.
    pub fn delete_access_key(&mut self, access_key_id: &str) -> Result<(), AdminError> {
        if self.access_key(access_key_id).is_none() {
            return Err(AdminError::NotFound {
                kind: "access key",
                name: access_key_id.into(),
            });
        }
        self.remove(Kind::AccessKey, access_key_id);
        Ok(())
    }

    /// Finds an account by id or name.
    pub fn find_account(&self, id_or_name: &str) -> Result<AccountId, AdminError> {
        if let Ok(id) = AccountId::parse(id_or_name)
            && self.tenant(&id).is_some()
        {
            return Ok(id);
        }
        self.account_by_name(id_or_name)
            .map(|a| a.id.clone())
            .ok_or_else(|| AdminError::NotFound {
                kind: "account",
                name: id_or_name.into(),
            })
    }

    /// Deletes an account and everything it owns; refused while it has
    /// live instances or addresses unless `force`.
    pub fn delete_account(&mut self, id: &AccountId, force: bool) -> Result<(), AdminError> {
        let tenant = self.tenant(id).ok_or_else(|| AdminError::NotFound {
            kind: "account",
            name: id.to_string(),
        })?;
        let live = tenant.instances.values().filter(|i| i.state.is_live()).count();
        if !force && (live > 0 || !tenant.addresses.is_empty()) {
            return Err(AdminError::InUse(format!(
                "account {id} still has {live} instances and {} addresses (use --force)",
                tenant.addresses.len()
            )));
        }
        let mut doomed: Vec<(Kind, String)> = Vec::new();
        for (resource, tags) in &tenant.tags {
            for key in tags.keys() {
                doomed.push((Kind::Tag, Tag::storage_id(resource, key)));
            }
        }
        doomed.extend(tenant.addresses.keys().map(|a| (Kind::Address, a.to_string())));
        doomed.extend(tenant.instances.keys().map(|i| (Kind::Instance, i.to_string())));
        doomed.extend(tenant.groups.keys().map(|g| (Kind::Group, g.to_string())));
        doomed.extend(
            self.access_keys()
                .filter(|k| &k.account_id == id)
                .map(|k| (Kind::AccessKey, k.access_key_id.clone())),
        );
        for (kind, object_id) in doomed {
            self.remove(kind, &object_id);
        }
        self.remove(Kind::Account, id.as_str());
        Ok(())
    }

    /// Adds a private network.
    pub fn add_network(
        &mut self,
        cidr: Ipv4Net,
        gateway: Ipv4Addr,
        vlan: Option<u16>,
        entropy: &mut dyn Entropy,
    ) -> Result<Network, AdminError> {
        let cidr = cidr.trunc();
        check_gateway(cidr, gateway)?;
        if cidr.prefix_len() > 29 {
            return Err(AdminError::Invalid(format!(
                "{cidr} is too small for instances (at most /29)"
            )));
        }
        if let Some(other) = self.networks().find(|n| overlaps(n.cidr, cidr)) {
            return Err(AdminError::Invalid(format!(
                "{cidr} overlaps network {} ({})",
                other.id, other.cidr
            )));
        }
        if let Some(vlan) = vlan
            && !(1..=4094).contains(&vlan)
        {
            return Err(AdminError::Invalid(format!("VLAN {vlan} is not in 1..4094")));
        }
        let network = Network {
            id: SubnetId::generate(entropy),
            cidr,
            gateway,
            vlan,
        };
        self.put(Object::Network(network.clone()));
        Ok(network)
    }

    /// Deletes a network without live instances.
    pub fn delete_network(&mut self, id: &SubnetId) -> Result<(), AdminError> {
        if self.get(Kind::Network, id.as_str()).is_none() {
            return Err(AdminError::NotFound {
                kind: "network",
                name: id.to_string(),
            });
        }
        let users = self
            .tenants()
            .flat_map(|t| t.instances.values())
            .filter(|i| i.state.is_live() && &i.subnet_id == id)
            .count();
        if users > 0 {
            return Err(AdminError::InUse(format!(
                "network {id} still has {users} instances"
            )));
        }
        self.remove(Kind::Network, id.as_str());
        Ok(())
    }

    /// Adds a public pool; by default every host address but the gateway is handed out.
    pub fn add_pool(
        &mut self,
        cidr: Ipv4Net,
        gateway: Ipv4Addr,
        range: Option<(Ipv4Addr, Ipv4Addr)>,
        entropy: &mut dyn Entropy,
    ) -> Result<PublicPool, AdminError> {
        let cidr = cidr.trunc();
        check_gateway(cidr, gateway)?;
        let (first, last) = match range {
            Some((first, last)) => {
                if !cidr.contains(&first) || !cidr.contains(&last) || first > last {
                    return Err(AdminError::Invalid(format!(
                        "range {first}-{last} is not inside {cidr}"
                    )));
                }
                (first, last)
            }
            None => {
                // The gateway usually sits at one end of the range: leave it out.
                let (mut first, mut last) = host_range(cidr);
                if first == gateway && first < last {
                    first = Ipv4Addr::from(u32::from(first) + 1);
                } else if last == gateway && first < last {
                    last = Ipv4Addr::from(u32::from(last) - 1);
                }
                (first, last)
            }
        };
        if let Some(other) = self.pools().find(|p| first <= p.last && p.first <= last) {
            return Err(AdminError::Invalid(format!(
                "range {first}-{last} overlaps pool {} ({}-{})",
                other.id, other.first, other.last
            )));
        }
        let pool = PublicPool {
            id: PoolId::generate(entropy),
            cidr,
            gateway,
            first,
            last,
        };
        self.put(Object::Pool(pool.clone()));
        Ok(pool)
    }

    /// Deletes a pool none of whose addresses is allocated.
    pub fn delete_pool(&mut self, id: &PoolId) -> Result<(), AdminError> {
        if self.get(Kind::Pool, id.as_str()).is_none() {
            return Err(AdminError::NotFound {
                kind: "pool",
                name: id.to_string(),
            });
        }
        let used = self
            .tenants()
            .flat_map(|t| t.addresses.values())
            .filter(|a| &a.pool_id == id)
            .count();
        if used > 0 {
            return Err(AdminError::InUse(format!(
                "pool {id} still has {used} allocated addresses"
            )));
        }
        self.remove(Kind::Pool, id.as_str());
        Ok(())
    }

    /// Adds an image to the catalogue.
    pub fn add_image(
        &mut self,
        name: &str,
        description: &str,
        entropy: &mut dyn Entropy,
    ) -> Result<Image, AdminError> {
        if name.is_empty() || name.len() > 128 {
            return Err(AdminError::Invalid(
                "an image name has 1 to 128 characters".into(),
            ));
        }
        if self.image_by_name(name).is_some() {
            return Err(AdminError::Duplicate {
                kind: "image",
                name: name.into(),
            });
        }
        let image = Image {
            id: ImageId::generate(entropy),
            name: name.into(),
            description: description.into(),
        };
        self.put(Object::Image(image.clone()));
        Ok(image)
    }

    /// Removes an image from the catalogue (running instances keep it).
    pub fn delete_image(&mut self, id: &ImageId) -> Result<(), AdminError> {
        if self.image(id).is_none() {
            return Err(AdminError::NotFound {
                kind: "image",
                name: id.to_string(),
            });
        }
        self.remove(Kind::Image, id.as_str());
        Ok(())
    }

    /// Registers a hypervisor.
    pub fn add_hypervisor(&mut self, hypervisor: Hypervisor) -> Result<(), AdminError> {
        if hypervisor.name.is_empty() {
            return Err(AdminError::Invalid("a hypervisor needs a name".into()));
        }
        if hypervisor.bridge.is_none() && hypervisor.datapath_id.is_none() {
            return Err(AdminError::Invalid(
                "a hypervisor needs --bridge or --datapath-id".into(),
            ));
        }
        if self.hypervisors().any(|h| h.name == hypervisor.name) {
            return Err(AdminError::Duplicate {
                kind: "hypervisor",
                name: hypervisor.name,
            });
        }
        if let Some(dpid) = hypervisor.datapath_id
            && let Some(other) = self.hypervisors().find(|h| h.datapath_id == Some(dpid))
        {
            return Err(AdminError::Invalid(format!(
                "datapath id {dpid:016x} is already hypervisor {}",
                other.name
            )));
        }
        self.put(Object::Hypervisor(hypervisor));
        Ok(())
    }

    /// Removes a hypervisor that hosts no live instance.
    pub fn delete_hypervisor(&mut self, name: &str) -> Result<(), AdminError> {
        if self.get(Kind::Hypervisor, name).is_none() {
            return Err(AdminError::NotFound {
                kind: "hypervisor",
                name: name.into(),
            });
        }
        let hosted = self
            .tenants()
            .flat_map(|t| t.instances.values())
            .filter(|i| i.state.is_live() && i.hypervisor.as_deref() == Some(name))
            .count();
        if hosted > 0 {
            return Err(AdminError::InUse(format!(
                "hypervisor {name} still hosts {hosted} instances"
            )));
        }
        self.remove(Kind::Hypervisor, name);
        Ok(())
    }

    // ===================== Elastic IPs =====================

    /// AllocateAddress: the lowest free address of the pools, within the account's quota.
    pub fn allocate_address(
        &mut self,
        account: &AccountId,
        domain: Domain,
        quota: usize,
        entropy: &mut dyn Entropy,
    ) -> Result<Address, Ec2Error> {
        let tenant = self.tenant_or_auth(account)?;
        if tenant.addresses.len() >= quota {
            return Err(Ec2Error::AddressLimitExceeded);
        }
        let (pool_id, public_ip) = self
            .free_public_ip()
            .ok_or(Ec2Error::InsufficientAddressCapacity)?;
        let mut allocation_id = AllocationId::generate(entropy);
        while self.get(Kind::Address, allocation_id.as_str()).is_some() {
            allocation_id = AllocationId::generate(entropy);
        }
        let address = Address {
            allocation_id,
            account_id: account.clone(),
            public_ip,
            pool_id,
            domain,
            association: None,
        };
        self.put(Object::Address(address.clone()));
        Ok(address)
    }

    fn free_public_ip(&self) -> Option<(PoolId, Ipv4Addr)> {
        for pool in self.pools() {
            let (first, last) = (u32::from(pool.first), u32::from(pool.last));
            for n in first..=last {
                let ip = Ipv4Addr::from(n);
                if ip != pool.gateway && self.public_ip_holder(ip).is_none() {
                    return Some((pool.id.clone(), ip));
                }
            }
        }
        None
    }

    /// AssociateAddress: binds the address to the instance's private IP. An
    /// address already bound elsewhere moves only with `allow_reassociation`
    /// (always for EC2-Classic `standard` addresses named by public IP); an
    /// address the instance already has is replaced, as in EC2.
    pub fn associate_address(
        &mut self,
        account: &AccountId,
        address: &AddressRef,
        instance_id: &InstanceId,
        private_ip: Option<Ipv4Addr>,
        allow_reassociation: bool,
        entropy: &mut dyn Entropy,
    ) -> Result<Association, Ec2Error> {
        let mut current = self.resolve_address(account, address)?.clone();
        let instance = self.resolve_instance(account, instance_id)?;
        if !matches!(instance.state, InstanceState::Pending | InstanceState::Running) {
            return Err(Ec2Error::IncorrectInstanceState(format!(
                "The instance '{instance_id}' is not in a valid state for this operation."
            )));
        }
        if let Some(ip) = private_ip
            && ip != instance.private_ip
        {
            return Err(Ec2Error::InvalidParameterValue(format!(
                "The private IP address {ip} is not assigned to instance {instance_id}"
            )));
        }
        let target_ip = instance.private_ip;
        let classic_by_ip = matches!(address, AddressRef::PublicIp(_)) && current.domain == Domain::Standard;
        if let Some(existing) = &current.association {
            if &existing.instance_id == instance_id {
                return Ok(existing.clone());
            }
            if !allow_reassociation && !classic_by_ip {
                return Err(Ec2Error::ResourceAlreadyAssociated(format!(
                    "resource {} is already associated with associate-id {}",
                    current.allocation_id, existing.id
                )));
            }
        }
        // An instance holds one Elastic IP on its primary address: a previous one is let go.
        let tenant = self.tenant_or_auth(account)?;
        let previous: Vec<Address> = tenant
            .addresses
            .values()
            .filter(|a| {
                a.allocation_id != current.allocation_id
                    && a.association
                        .as_ref()
                        .is_some_and(|x| &x.instance_id == instance_id)
            })
            .cloned()
            .collect();
        for mut other in previous {
            other.association = None;
            self.put(Object::Address(other));
        }
        let association = Association {
            id: AssociationId::generate(entropy),
            instance_id: instance_id.clone(),
            private_ip: target_ip,
        };
        current.association = Some(association.clone());
        self.put(Object::Address(current));
        Ok(association)
    }

    /// DisassociateAddress by public IP or association id.
    pub fn disassociate_address(
        &mut self,
        account: &AccountId,
        by: &DisassociateRef,
    ) -> Result<(), Ec2Error> {
        let tenant = self.tenant_or_auth(account)?;
        let address = match by {
            DisassociateRef::PublicIp(ip) => self.resolve_address(account, &AddressRef::PublicIp(*ip))?,
            DisassociateRef::Association(id) => tenant
                .addresses
                .values()
                .find(|a| a.association.as_ref().is_some_and(|x| &x.id == id))
                .ok_or_else(|| Ec2Error::InvalidAssociationIdNotFound(id.to_string()))?,
        };
        let mut address = address.clone();
        // EC2 answers success for an unassociated address named by IP.
        if address.association.take().is_some() {
            self.put(Object::Address(address));
        }
        Ok(())
    }

    /// ReleaseAddress: a `standard` address is let go even while associated
    /// (EC2-Classic); a `vpc` address must be disassociated first.
    pub fn release_address(
        &mut self,
        account: &AccountId,
        address: &AddressRef,
    ) -> Result<Address, Ec2Error> {
        let found = self.resolve_address(account, address)?.clone();
        if found.association.is_some() && found.domain == Domain::Vpc {
            return Err(Ec2Error::InvalidIpAddressInUse(found.public_ip.to_string()));
        }
        self.remove_tags_of(account, found.allocation_id.as_str());
        self.remove(Kind::Address, found.allocation_id.as_str());
        Ok(found)
    }

    // ===================== security groups =====================

    /// CreateSecurityGroup: a new group denies all ingress and allows all egress.
    pub fn create_security_group(
        &mut self,
        account: &AccountId,
        name: &str,
        description: &str,
        entropy: &mut dyn Entropy,
    ) -> Result<SecurityGroup, Ec2Error> {
        validate_group_text("GroupName", name)?;
        validate_group_text("GroupDescription", description)?;
        if name.eq_ignore_ascii_case(DEFAULT_GROUP) {
            return Err(Ec2Error::InvalidParameterValue(
                "Invalid value 'default' for groupName. You may not reference the default security group by name."
                    .into(),
            ));
        }
        if name.starts_with("sg-") {
            return Err(Ec2Error::InvalidParameterValue(format!(
                "Invalid value '{name}' for groupName. Group names may not be in the format sg-*."
            )));
        }
        let tenant = self.tenant_or_auth(account)?;
        if tenant.group_names.contains_key(name) {
            return Err(Ec2Error::InvalidGroupDuplicate(name.into()));
        }
        let group = SecurityGroup {
            id: GroupId::generate(entropy),
            account_id: account.clone(),
            name: name.into(),
            description: description.into(),
            ingress: Vec::new(),
            egress: vec![Rule {
                id: RuleId::generate(entropy),
                permission: Permission::allow_all_to_anywhere(),
                description: None,
            }],
        };
        self.put(Object::Group(group.clone()));
        Ok(group)
    }

    /// DeleteSecurityGroup: refused for `default`, for groups of live
    /// instances and for groups other groups' rules refer to.
    pub fn delete_security_group(
        &mut self,
        account: &AccountId,
        group: &GroupRef,
    ) -> Result<GroupId, Ec2Error> {
        let found = self.resolve_group(account, group)?;
        let id = found.id.clone();
        if found.name == DEFAULT_GROUP {
            return Err(Ec2Error::CannotDelete(format!(
                "the specified group: \"{id}\" name: \"default\" cannot be deleted by a user"
            )));
        }
        let tenant = self.tenant_or_auth(account)?;
        if tenant
            .instances
            .values()
            .any(|i| i.state.is_live() && i.group_ids.contains(&id))
        {
            return Err(Ec2Error::DependencyViolation(format!(
                "resource {id} has a dependent object"
            )));
        }
        let referenced = tenant.groups.values().any(|g| {
            g.id != id
                && g.ingress.iter().chain(&g.egress).any(
                    |r| matches!(&r.permission.source, Source::Group { group_id, .. } if group_id == &id),
                )
        });
        if referenced {
            return Err(Ec2Error::DependencyViolation(format!(
                "resource {id} has a dependent object"
            )));
        }
        self.remove_tags_of(account, id.as_str());
        self.remove(Kind::Group, id.as_str());
        Ok(id)
    }

    /// AuthorizeSecurityGroupIngress/Egress: all rules or none; a rule equal
    /// to an existing one (or to another in the request) is a duplicate.
    pub fn authorize(
        &mut self,
        account: &AccountId,
        group: &GroupRef,
        direction: Direction,
        requests: Vec<RuleRequest>,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Rule>, Ec2Error> {
        if requests.is_empty() {
            return Err(Ec2Error::MissingParameter("IpPermissions".into()));
        }
        let mut updated = self.resolve_group(account, group)?.clone();
        for request in &requests {
            if let Source::Group { group_id, account_id } = &request.permission.source {
                if account_id != account {
                    return Err(Ec2Error::InvalidGroupNotFound(format!(
                        "The security group '{group_id}' does not exist"
                    )));
                }
                self.resolve_group(account, &GroupRef::Id(group_id.clone()))?;
            }
            if let Some(text) = &request.description {
                crate::rule::validate_description(text)?;
            }
        }
        let rules = match direction {
            Direction::Ingress => &mut updated.ingress,
            Direction::Egress => &mut updated.egress,
        };
        let mut added = Vec::new();
        for request in requests {
            if rules.iter().any(|r| r.permission == request.permission) {
                return Err(Ec2Error::InvalidPermissionDuplicate(format!(
                    "the specified rule \"peer: {}, {}, ALLOW\" already exists",
                    request.permission.source,
                    describe_ports(&request.permission)
                )));
            }
            let rule = Rule {
                id: RuleId::generate(entropy),
                permission: request.permission,
                description: request.description,
            };
            rules.push(rule.clone());
            added.push(rule);
        }
        self.put(Object::Group(updated));
        Ok(added)
    }

    /// RevokeSecurityGroupIngress/Egress by permission: every named rule must exist.
    pub fn revoke(
        &mut self,
        account: &AccountId,
        group: &GroupRef,
        direction: Direction,
        permissions: &[Permission],
        rule_ids: &[RuleId],
    ) -> Result<Vec<Rule>, Ec2Error> {
        if permissions.is_empty() && rule_ids.is_empty() {
            return Err(Ec2Error::MissingParameter("IpPermissions".into()));
        }
        let mut updated = self.resolve_group(account, group)?.clone();
        let rules = match direction {
            Direction::Ingress => &mut updated.ingress,
            Direction::Egress => &mut updated.egress,
        };
        let mut removed = Vec::new();
        for permission in permissions {
            let Some(position) = rules.iter().position(|r| &r.permission == permission) else {
                return Err(Ec2Error::InvalidPermissionNotFound(
                    "The specified rule does not exist in this security group.".into(),
                ));
            };
            removed.push(rules.remove(position));
        }
        for rule_id in rule_ids {
            let Some(position) = rules.iter().position(|r| &r.id == rule_id) else {
                return Err(Ec2Error::InvalidPermissionNotFound(format!(
                    "The security group rule ID '{rule_id}' does not exist in this security group."
                )));
            };
            removed.push(rules.remove(position));
        }
        self.put(Object::Group(updated));
        Ok(removed)
    }

    // ===================== instances =====================

    /// RunInstances: checks the image, groups and network, then creates
    /// between MinCount and MaxCount instances in `pending`. A ClientToken
    /// seen before returns the earlier reservation.
    pub fn run_instances(
        &mut self,
        account: &AccountId,
        request: &LaunchRequest,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Instance>, Ec2Error> {
        let tenant = self.tenant_or_auth(account)?;
        if let Some(token) = &request.client_token {
            let earlier: Vec<Instance> = tenant
                .instances
                .values()
                .filter(|i| i.client_token.as_ref() == Some(token))
                .cloned()
                .collect();
            if let Some(first) = earlier.first() {
                if first.image_id != request.image_id || first.instance_type != request.instance_type {
                    return Err(Ec2Error::IdempotentParameterMismatch(token.clone()));
                }
                let mut earlier = earlier;
                earlier.sort_by_key(|i| i.launch_index);
                return Ok(earlier);
            }
        }
        if request.min_count == 0 || request.max_count < request.min_count {
            return Err(Ec2Error::InvalidParameterValue(format!(
                "Invalid value for MinCount/MaxCount: {}/{}",
                request.min_count, request.max_count
            )));
        }
        if request.max_count > 1000 {
            return Err(Ec2Error::InvalidParameterValue(
                "MaxCount may be at most 1000".into(),
            ));
        }
        if self.image(&request.image_id).is_none() {
            return Err(Ec2Error::InvalidImageIdNotFound(request.image_id.to_string()));
        }
        let mut group_ids = Vec::new();
        for reference in &request.groups {
            let id = self.resolve_launch_group(account, reference)?;
            if !group_ids.contains(&id) {
                group_ids.push(id);
            }
        }
        if group_ids.is_empty() {
            group_ids.push(
                self.resolve_group(account, &GroupRef::Name(DEFAULT_GROUP.into()))?
                    .id
                    .clone(),
            );
        }
        let network = match &request.subnet_id {
            Some(id) => self
                .get(Kind::Network, id.as_str())
                .and_then(|o| if let Object::Network(n) = o { Some(n) } else { None })
                .ok_or_else(|| {
                    Ec2Error::InvalidParameterValue(format!("The subnet ID '{id}' does not exist"))
                })?,
            None => self.networks().next().cloned().ok_or_else(|| {
                Ec2Error::Unavailable("no private network is configured (flowgate admin network add)".into())
            })?,
        };
        if request.private_ip.is_some() && request.max_count > 1 {
            return Err(Ec2Error::InvalidParameterCombination(
                "Cannot specify PrivateIpAddress with MaxCount greater than 1".into(),
            ));
        }
        let private_ips = match request.private_ip {
            Some(ip) => {
                if !network.cidr.contains(&ip) || ip == network.gateway || !is_host(network.cidr, ip) {
                    return Err(Ec2Error::InvalidParameterValue(format!(
                        "Address {ip} does not fall within the subnet's address range"
                    )));
                }
                if self.private_ip_in_use(&network.id, ip) {
                    return Err(Ec2Error::InvalidIpAddressInUse(ip.to_string()));
                }
                vec![ip]
            }
            None => {
                let free = self.free_private_ips(&network, request.max_count as usize);
                if free.len() < request.min_count as usize {
                    return Err(Ec2Error::InsufficientFreeAddressesInSubnet(
                        network.id.to_string(),
                    ));
                }
                free
            }
        };
        // Placement: the least-loaded hypervisor of the zone, counting the
        // instances placed by this very request. Without hypervisors the
        // instances are records only.
        let mut load: BTreeMap<String, usize> = self
            .hypervisors()
            .filter(|h| h.zone == request.availability_zone)
            .map(|h| (h.name.clone(), 0))
            .collect();
        let any_hypervisor = self.hypervisors().next().is_some();
        if any_hypervisor && load.is_empty() {
            return Err(Ec2Error::Unavailable(format!(
                "no hypervisor in availability zone {}",
                request.availability_zone
            )));
        }
        for inst in self.tenants().flat_map(|t| t.instances.values()) {
            if inst.state.is_live()
                && let Some(count) = inst.hypervisor.as_ref().and_then(|h| load.get_mut(h))
            {
                *count += 1;
            }
        }
        let reservation_id = ReservationId::generate(entropy);
        let mut launched = Vec::new();
        for (index, private_ip) in private_ips.into_iter().enumerate() {
            let (id, interface_name) = loop {
                let id = InstanceId::generate(entropy);
                let name = interface_name_for(&id);
                if self.instance_owner(&id).is_none() && !self.interface_in_use(&name) {
                    break (id, name);
                }
            };
            let mac = loop {
                let bits = entropy.next_u64().to_be_bytes();
                let mac = MacAddr([
                    MAC_PREFIX[0],
                    MAC_PREFIX[1],
                    MAC_PREFIX[2],
                    bits[0],
                    bits[1],
                    bits[2],
                ]);
                if !self.mac_in_use(mac) {
                    break mac;
                }
            };
            let instance = Instance {
                id,
                account_id: account.clone(),
                reservation_id: reservation_id.clone(),
                launch_index: index as u32,
                image_id: request.image_id.clone(),
                instance_type: request.instance_type.clone(),
                state: InstanceState::Pending,
                state_reason: None,
                subnet_id: network.id.clone(),
                private_ip,
                mac,
                group_ids: group_ids.clone(),
                hypervisor: place(&mut load),
                interface_name,
                availability_zone: request.availability_zone.clone(),
                user_data: request.user_data.clone(),
                key_name: request.key_name.clone(),
                client_token: request.client_token.clone(),
                launch_ms: now_ms,
                terminated_ms: None,
            };
            self.put(Object::Instance(instance.clone()));
            launched.push(instance);
        }
        Ok(launched)
    }

    fn free_private_ips(&self, network: &Network, wanted: usize) -> Vec<Ipv4Addr> {
        let (first, last) = host_range(network.cidr);
        (u32::from(first)..=u32::from(last))
            .map(Ipv4Addr::from)
            .filter(|ip| *ip != network.gateway && !self.private_ip_in_use(&network.id, *ip))
            .take(wanted)
            .collect()
    }

    /// TerminateInstances: moves each to `shutting-down` (the compute driver
    /// finishes the job) and lets go of its Elastic IP, which stays allocated.
    /// Returns (instance, previous state, current state) for each.
    pub fn terminate_instances(
        &mut self,
        account: &AccountId,
        ids: &[InstanceId],
    ) -> Result<Vec<(InstanceId, InstanceState, InstanceState)>, Ec2Error> {
        if ids.is_empty() {
            return Err(Ec2Error::MissingParameter("InstanceId".into()));
        }
        for id in ids {
            self.resolve_instance(account, id)?;
        }
        let mut out = Vec::new();
        for id in ids {
            let mut instance = self.resolve_instance(account, id)?.clone();
            let previous = instance.state;
            if matches!(previous, InstanceState::Pending | InstanceState::Running) {
                instance.state = InstanceState::ShuttingDown;
                instance.state_reason = Some("Client.UserInitiatedShutdown".into());
                self.release_association_of(account, id);
                self.put(Object::Instance(instance.clone()));
            }
            out.push((id.clone(), previous, instance.state));
        }
        Ok(out)
    }

    fn release_association_of(&mut self, account: &AccountId, instance_id: &InstanceId) {
        let Some(tenant) = self.tenant_ref(account) else {
            return;
        };
        let bound: Vec<Address> = tenant
            .addresses
            .values()
            .filter(|a| {
                a.association
                    .as_ref()
                    .is_some_and(|x| &x.instance_id == instance_id)
            })
            .cloned()
            .collect();
        for mut address in bound {
            address.association = None;
            self.put(Object::Address(address));
        }
    }

    /// Moves an instance along EC2's state machine (what compute drivers report).
    pub fn set_instance_state(
        &mut self,
        id: &InstanceId,
        state: InstanceState,
        now_ms: u64,
    ) -> Result<(), Ec2Error> {
        let owner = self
            .instance_owner(id)
            .cloned()
            .ok_or_else(|| Ec2Error::InvalidInstanceIdNotFound(id.to_string()))?;
        let mut instance = self.resolve_instance(&owner, id)?.clone();
        if instance.state == state {
            return Ok(());
        }
        if !instance.state.can_become(state) {
            return Err(Ec2Error::IncorrectInstanceState(format!(
                "instance {id} cannot go from {} to {}",
                instance.state.name(),
                state.name()
            )));
        }
        if state == InstanceState::ShuttingDown {
            self.release_association_of(&owner, id);
        }
        instance.state = state;
        if state == InstanceState::Terminated {
            instance.terminated_ms = Some(now_ms);
        }
        self.put(Object::Instance(instance));
        Ok(())
    }

    /// Forgets instances terminated before `cutoff_ms`, as EC2 stops listing them.
    pub fn purge_terminated(&mut self, cutoff_ms: u64) -> usize {
        let doomed: Vec<(AccountId, InstanceId)> = self
            .tenants()
            .flat_map(|t| t.instances.values())
            .filter(|i| {
                i.state == InstanceState::Terminated && i.terminated_ms.is_some_and(|t| t < cutoff_ms)
            })
            .map(|i| (i.account_id.clone(), i.id.clone()))
            .collect();
        for (account, id) in &doomed {
            self.remove_tags_of(account, id.as_str());
            self.remove(Kind::Instance, id.as_str());
        }
        doomed.len()
    }

    /// ModifyInstanceAttribute with GroupId.N: replaces the instance's groups.
    pub fn set_instance_groups(
        &mut self,
        account: &AccountId,
        id: &InstanceId,
        groups: &[GroupId],
    ) -> Result<(), Ec2Error> {
        if groups.is_empty() {
            return Err(Ec2Error::MissingParameter("GroupId".into()));
        }
        let mut instance = self.resolve_instance(account, id)?.clone();
        if !instance.state.is_live() || instance.state == InstanceState::ShuttingDown {
            return Err(Ec2Error::IncorrectInstanceState(format!(
                "The instance '{id}' is not in a valid state for this operation."
            )));
        }
        let mut ids = Vec::new();
        for group in groups {
            let found = self.resolve_group(account, &GroupRef::Id(group.clone()))?;
            if !ids.contains(&found.id) {
                ids.push(found.id.clone());
            }
        }
        instance.group_ids = ids;
        self.put(Object::Instance(instance));
        Ok(())
    }

    // ===================== tags =====================

    /// CreateTags: sets (or overwrites) each tag on each resource of the account.
    pub fn create_tags(
        &mut self,
        account: &AccountId,
        resources: &[String],
        tags: &[(String, String)],
    ) -> Result<(), Ec2Error> {
        if resources.is_empty() {
            return Err(Ec2Error::MissingParameter("ResourceId".into()));
        }
        if tags.is_empty() {
            return Err(Ec2Error::MissingParameter("Tag".into()));
        }
        for (key, value) in tags {
            validate_tag(key, value)?;
        }
        for resource in resources {
            self.check_taggable(account, resource)?;
            let existing: BTreeMap<String, String> = self
                .tenant_or_auth(account)?
                .tags_of(resource)
                .cloned()
                .unwrap_or_default();
            let new_keys = tags.iter().filter(|(k, _)| !existing.contains_key(k)).count();
            if existing.len() + new_keys > MAX_TAGS_PER_RESOURCE {
                return Err(Ec2Error::InvalidParameterValue(format!(
                    "Tag limit exceeded: a resource may have at most {MAX_TAGS_PER_RESOURCE} tags"
                )));
            }
        }
        for resource in resources {
            for (key, value) in tags {
                self.put(Object::Tag(Tag {
                    resource_id: resource.clone(),
                    account_id: account.clone(),
                    key: key.clone(),
                    value: value.clone(),
                }));
            }
        }
        Ok(())
    }

    /// DeleteTags: removes the named keys (only where the value matches, when
    /// one is given); no keys means every tag of the resources.
    pub fn delete_tags(
        &mut self,
        account: &AccountId,
        resources: &[String],
        tags: &[(String, Option<String>)],
    ) -> Result<(), Ec2Error> {
        if resources.is_empty() {
            return Err(Ec2Error::MissingParameter("ResourceId".into()));
        }
        for resource in resources {
            self.check_taggable(account, resource)?;
        }
        for resource in resources {
            let existing = self
                .tenant_or_auth(account)?
                .tags_of(resource)
                .cloned()
                .unwrap_or_default();
            for (key, value) in existing {
                let wanted = tags.is_empty()
                    || tags
                        .iter()
                        .any(|(k, v)| k == &key && v.as_ref().is_none_or(|v| v == &value));
                if wanted {
                    self.remove(Kind::Tag, &Tag::storage_id(resource, &key));
                }
            }
        }
        Ok(())
    }

    fn check_taggable(&self, account: &AccountId, resource: &str) -> Result<(), Ec2Error> {
        if let Ok(id) = InstanceId::parse(resource) {
            self.resolve_instance(account, &id).map(|_| ())
        } else if let Ok(id) = GroupId::parse(resource) {
            self.resolve_group(account, &GroupRef::Id(id)).map(|_| ())
        } else if let Ok(id) = AllocationId::parse(resource) {
            self.resolve_address(account, &AddressRef::Allocation(id))
                .map(|_| ())
        } else {
            Err(Ec2Error::InvalidId(resource.into()))
        }
    }

    fn remove_tags_of(&mut self, account: &AccountId, resource: &str) {
        let keys: Vec<String> = self
            .tenant_ref(account)
            .and_then(|t| t.tags_of(resource))
            .map(|tags| tags.keys().cloned().collect())
            .unwrap_or_default();
        for key in keys {
            self.remove(Kind::Tag, &Tag::storage_id(resource, &key));
        }
    }
}

/// How DisassociateAddress names what to undo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisassociateRef {
    /// `PublicIp`.
    PublicIp(Ipv4Addr),
    /// `AssociationId`.
    Association(AssociationId),
}

/// Picks the least-loaded hypervisor (the first by name among equals) and
/// counts the new instance on it.
fn place(load: &mut BTreeMap<String, usize>) -> Option<String> {
    let (name, count) = load.iter_mut().min_by_key(|(_, count)| **count)?;
    *count += 1;
    Some(name.clone())
}

/// The OVS port name for an instance: `fg` + the last 13 hex digits of its id (15 characters, IFNAMSIZ).
pub fn interface_name_for(id: &InstanceId) -> String {
    let digits = &id.as_str()[InstanceId::PREFIX.len()..];
    let tail = &digits[digits.len().saturating_sub(13)..];
    format!("fg{tail}")
}

fn describe_ports(permission: &Permission) -> String {
    match (permission.protocol, permission.from_port, permission.to_port) {
        (Protocol::All, _, _) => "ALL".to_string(),
        (p, Some(from), Some(to)) => format!("{} from port: {from} to port: {to}", p.as_ec2()),
        (p, _, _) => p.as_ec2(),
    }
}

fn validate_group_text(field: &str, text: &str) -> Result<(), Ec2Error> {
    if text.is_empty() {
        return Err(Ec2Error::MissingParameter(field.into()));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(c);
    if text.len() > 255 || !text.chars().all(allowed) {
        return Err(Ec2Error::InvalidParameterValue(format!(
            "Value ({text}) for parameter {field} is invalid: use up to 255 of a-z, A-Z, 0-9, spaces and ._-:/()#,@[]+=&;{{}}!$*"
        )));
    }
    Ok(())
}

fn validate_tag(key: &str, value: &str) -> Result<(), Ec2Error> {
    if key.is_empty() || key.chars().count() > 128 {
        return Err(Ec2Error::InvalidParameterValue(format!(
            "Tag key must be 1 to 128 characters: '{key}'"
        )));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(Ec2Error::InvalidParameterValue(format!(
            "Tag keys starting with 'aws:' are reserved for internal use: '{key}'"
        )));
    }
    if value.chars().count() > 256 {
        return Err(Ec2Error::InvalidParameterValue(format!(
            "Tag value may be at most 256 characters (key '{key}')"
        )));
    }
    Ok(())
}

fn check_gateway(cidr: Ipv4Net, gateway: Ipv4Addr) -> Result<(), AdminError> {
    if !cidr.contains(&gateway) || !is_host(cidr, gateway) {
        return Err(AdminError::Invalid(format!(
            "gateway {gateway} is not a host address of {cidr}"
        )));
    }
    Ok(())
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Whether `ip` is a usable host address of `cidr` (not its network or broadcast address).
fn is_host(cidr: Ipv4Net, ip: Ipv4Addr) -> bool {
    cidr.prefix_len() >= 31 || (ip != cidr.network() && ip != cidr.broadcast())
}

/// First and last usable host address of `cidr`.
fn host_range(cidr: Ipv4Net) -> (Ipv4Addr, Ipv4Addr) {
    if cidr.prefix_len() >= 31 {
        (cidr.network(), cidr.broadcast())
    } else {
        (
            Ipv4Addr::from(u32::from(cidr.network()) + 1),
            Ipv4Addr::from(u32::from(cidr.broadcast()) - 1),
        )
    }
}
