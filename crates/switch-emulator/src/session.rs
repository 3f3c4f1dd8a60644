//! The OpenFlow protocol of one controller connection, as a pure state
//! machine: this module's one job is turning each message received into
//! the messages to send back and the changes to the switch, like Faucet's
//! valve or smoltcp's sockets. It owns no socket and reads no clock: the
//! caller passes every message's bytes and the current time, and carries
//! out the [`Output`]s in order ([`crate::runtime`] does so over tokio).
//!
//! What it answers, following Open vSwitch 3.x (`ofproto.c`, `bundles.c`,
//! `connmgr.c`): version negotiation, echo, features, switch config, roles
//! with generation ids, descriptions, flow, aggregate and port statistics,
//! port descriptions, barriers, flow-mods, bundles (OpenFlow 1.3 ONF
//! extension and 1.4 native), packet-outs; anything else gets the error
//! Open vSwitch would send, carrying the first 64 bytes of the request.

use std::collections::HashMap;
use std::time::Duration;

use openflow::multipart::split_flow_stats;
use openflow::{
    AggregateStats, BundleAdd, BundleControl, BundleCtrlType, ControllerRole, DecodeError, ErrorCode,
    ErrorMsg, FlowMod, FlowModCommand, FlowRemoved, FlowStatsRequest, Hello, Message, MultipartReply,
    MultipartReplyBody, MultipartRequest, MultipartRequestBody, NX_VENDOR_ID, OfpMessage, Role, SwitchConfig,
    SwitchFeatures, Version, negotiate_version,
};
use thiserror::Error;

use crate::datapath::{ConnId, Datapath, flow_stats};
use crate::matching::canonicalize;
use crate::ports::port_status_message;
use crate::table::{Command, Criteria, Effect, FlowEntry, FlowKey, FlowSpec, Undo};
use crate::validate::{N_TABLES, prepare};

/// Error data carries at most this many bytes of the request.
const ERROR_DATA_LEN: usize = 64;
/// `OFP_DEFAULT_MISS_SEND_LEN`.
const DEFAULT_MISS_SEND_LEN: u16 = 128;
/// `OFPC_FLOW_STATS | OFPC_TABLE_STATS | OFPC_PORT_STATS |
/// OFPC_GROUP_STATS | OFPC_QUEUE_STATS`, as Open vSwitch reports.
const CAPABILITIES: u32 = 0x4f;
/// `OFPT_SET_ASYNC`: accepted and ignored (an emulated switch sends no
/// packet-ins).
const OFPT_SET_ASYNC: u8 = 28;
/// `OFPT_METER_MOD`: accepted and ignored, so that a controller can
/// install the meter a packet-in rate limit uses.
const OFPT_METER_MOD: u8 = 29;
/// Nicira messages Open vSwitch accepts that change nothing an emulated
/// switch models: set flow format (12), flow-mod table id (15), set
/// packet-in format (16), set async config (19), set controller id (20).
const NX_ACCEPTED_SUBTYPES: [u32; 5] = [12, 15, 16, 19, 20];
/// `OFPRR_DELETE`.
const REASON_DELETE: u8 = 2;

/// Settings of a connection's protocol behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Versions offered in the `HELLO` (1.3 and 1.4 are implemented).
    pub versions: Vec<Version>,
    /// Send an echo request after this long without hearing from the
    /// controller, and give up after as long again (Open vSwitch's
    /// inactivity probe); `None` never probes. Any message counts as a
    /// sign of life, not only echo replies.
    pub echo_interval: Option<Duration>,
    /// Discard a bundle left untouched this long (Open vSwitch: 10 s).
    pub bundle_idle_timeout: Duration,
    /// Open bundles per connection (`OFPBFC_OUT_OF_BUNDLES` beyond).
    pub max_bundles: usize,
    /// Messages per bundle (`OFPBFC_MSG_TOO_MANY` beyond).
    pub max_bundle_messages: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            versions: vec![Version::OF13, Version::OF14],
            echo_interval: Some(Duration::from_secs(5)),
            bundle_idle_timeout: Duration::from_secs(10),
            max_bundles: 64,
            max_bundle_messages: 1_000_000,
        }
    }
}

/// Why a session ends.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CloseReason {
    /// The controller offers no version the switch speaks.
    #[error("no common OpenFlow version (controller offers {0:?})")]
    VersionMismatch(Vec<Version>),
    /// The first message was not a `HELLO`.
    #[error("expected HELLO, got {0}")]
    NotHello(&'static str),
    /// The first message could not be decoded.
    #[error("undecodable HELLO: {0}")]
    BadHello(DecodeError),
    /// The drop-after-K fault fired.
    #[error("fault injection: connection dropped after {0} messages")]
    FaultInjected(u64),
    /// Nothing was heard for an echo interval after an echo request.
    #[error("controller silent for {0:?} after an echo request")]
    PeerDead(Duration),
}

/// One thing the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a message on this connection.
    Send(OfpMessage),
    /// Stall: send nothing and handle nothing for this long (late-barrier
    /// fault). Messages already output go out first.
    Delay(Duration),
    /// Send an asynchronous message (flow removed, port status) on every
    /// connection of the switch, this one included; each connection adapts
    /// it with [`Session::async_message`].
    Broadcast(Message),
    /// Close the connection.
    Close(CloseReason),
}

/// An open bundle.
#[derive(Debug)]
struct Bundle {
    flags: u16,
    closed: bool,
    last_used: Duration,
    /// The message that opened it (first bytes), for a timeout error.
    opened_by: Vec<u8>,
    entries: Vec<BundleEntry>,
}

#[derive(Debug)]
struct BundleEntry {
    /// xid of the add (and of the message inside).
    xid: u32,
    /// First bytes of the add message, for an error at commit.
    request: Box<[u8]>,
    /// `None` for a packet-out.
    flow: Option<FlowSpec>,
}

/// The protocol state of one controller connection.
#[derive(Debug)]
pub struct Session {
    id: ConnId,
    config: SessionConfig,
    version: Option<Version>,
    switch_config: SwitchConfig,
    bundles: HashMap<u32, Bundle>,
    next_xid: u32,
    received: u64,
    last_rx: Duration,
    probe_sent_at: Option<Duration>,
}

fn error_data(raw: &[u8]) -> Vec<u8> {
    raw[..raw.len().min(ERROR_DATA_LEN)].to_vec()
}

fn millis(t: Duration) -> u64 {
    u64::try_from(t.as_millis()).unwrap_or(u64::MAX)
}

fn command_of(fm: &FlowMod) -> &'static str {
    match fm.command {
        FlowModCommand::Add => "add",
        FlowModCommand::Modify => "modify",
        FlowModCommand::ModifyStrict => "modify_strict",
        FlowModCommand::Delete => "delete",
        FlowModCommand::DeleteStrict => "delete_strict",
        FlowModCommand::Unknown(_) => "other",
    }
}

impl Session {
    /// A new connection, at time `now`; call [`Session::start`] to get the
    /// `HELLO` to send.
    pub fn new(id: ConnId, config: SessionConfig, now: Duration) -> Session {
        Session {
            id,
            config,
            version: None,
            switch_config: SwitchConfig {
                flags: 0,
                miss_send_len: DEFAULT_MISS_SEND_LEN,
            },
            bundles: HashMap::new(),
            next_xid: 0,
            received: 0,
            last_rx: now,
            probe_sent_at: None,
        }
    }

    /// The negotiated version, once the controller's `HELLO` arrived.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    fn xid(&mut self) -> u32 {
        self.next_xid = self.next_xid.wrapping_add(1);
        self.next_xid
    }

    fn highest(&self) -> Version {
        self.config
            .versions
            .iter()
            .copied()
            .max()
            .unwrap_or(Version::OF13)
    }

    /// The switch's `HELLO`, offering every configured version.
    pub fn start(&mut self, dp: &mut Datapath, out: &mut Vec<Output>) {
        let xid = self.xid();
        let hello = Hello::with_versions(&self.config.versions);
        self.push(
            dp,
            out,
            OfpMessage::new(self.highest(), xid, Message::Hello(hello)),
        );
    }

    fn push(&self, dp: &mut Datapath, out: &mut Vec<Output>, msg: OfpMessage) {
        dp.counters.messages_sent += 1;
        if matches!(msg.body, Message::Error(_)) {
            dp.counters.errors_sent += 1;
        }
        out.push(Output::Send(msg));
    }

    fn reply(&self, dp: &mut Datapath, out: &mut Vec<Output>, xid: u32, body: Message) {
        let v = self.version.unwrap_or(Version::OF13);
        self.push(dp, out, OfpMessage::new(v, xid, body));
    }

    /// Sends the error named `name` (in the negotiated version) about the
    /// request `raw` with transaction id `xid`.
    fn error(&self, dp: &mut Datapath, out: &mut Vec<Output>, xid: u32, raw: &[u8], name: &str) {
        let v = self.version.unwrap_or(Version::OF13);
        // Every name used here is in the codec's catalogue for 1.3 and
        // 1.4; the fallback only guards a fault configured with a name
        // valid in 1.3 but not in 1.4.
        let code = ErrorCode::from_name(v, name)
            .or_else(|| ErrorCode::from_name(v, "OFPBRC_EPERM"))
            .unwrap_or(ErrorCode::Standard { err_type: 1, code: 5 });
        self.reply(
            dp,
            out,
            xid,
            Message::Error(ErrorMsg {
                code,
                data: error_data(raw),
            }),
        );
    }

    /// Handles one received message (`raw` holds exactly its bytes, as
    /// framed by [`openflow::message_length`]) at time `now`.
    pub fn handle(&mut self, dp: &mut Datapath, raw: &[u8], now: Duration, out: &mut Vec<Output>) {
        self.received += 1;
        self.last_rx = now;
        self.probe_sent_at = None;
        dp.counters.messages_received += 1;
        let decoded = OfpMessage::decode(raw);
        match self.version {
            None => self.handle_hello(dp, decoded, out),
            Some(version) => match decoded {
                Err(_) => {
                    // Framing held (the caller checked the length), only
                    // the body is malformed: refuse it and carry on, as
                    // Open vSwitch does.
                    let xid = raw
                        .get(4..8)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u32::from_be_bytes);
                    self.error(dp, out, xid, raw, "OFPBRC_BAD_LEN");
                }
                Ok(msg) if msg.version != version => {
                    self.error(dp, out, msg.xid, raw, "OFPBRC_BAD_VERSION");
                }
                Ok(msg) => self.dispatch(dp, msg, raw, now, out),
            },
        }
        if let Some(k) = dp.faults.drop_after_messages
            && self.received >= k
            && dp.faults.drop_times.is_none_or(|times| dp.drops_done < times)
            && !out.iter().any(|o| matches!(o, Output::Close(_)))
        {
            dp.drops_done += 1;
            out.push(Output::Close(CloseReason::FaultInjected(k)));
        }
    }

    fn handle_hello(
        &mut self,
        dp: &mut Datapath,
        decoded: Result<OfpMessage, DecodeError>,
        out: &mut Vec<Output>,
    ) {
        let msg = match decoded {
            Ok(msg) => msg,
            Err(e) => {
                out.push(Output::Close(CloseReason::BadHello(e)));
                return;
            }
        };
        let Message::Hello(hello) = &msg.body else {
            out.push(Output::Close(CloseReason::NotHello(msg.body.name())));
            return;
        };
        match negotiate_version(&self.config.versions, msg.version, hello) {
            Some(v) => {
                self.version = Some(v);
                dp.attach(self.id);
                dp.counters.connects += 1;
            }
            None => {
                let theirs = hello.versions(msg.version);
                let v = theirs.iter().copied().max().unwrap_or(msg.version);
                let text = format!(
                    "We support {:?}, you support {theirs:?}, no common versions.",
                    self.config.versions
                );
                if let Some(code) = ErrorCode::from_name(v, "OFPHFC_INCOMPATIBLE") {
                    let err = Message::Error(ErrorMsg {
                        code,
                        data: text.into_bytes(),
                    });
                    self.push(dp, out, OfpMessage::new(v, 0, err));
                }
                out.push(Output::Close(CloseReason::VersionMismatch(theirs)));
            }
        }
    }

    fn is_slave(&self, dp: &Datapath) -> bool {
        dp.role(self.id) == ControllerRole::SLAVE
    }

    fn dispatch(
        &mut self,
        dp: &mut Datapath,
        msg: OfpMessage,
        raw: &[u8],
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let xid = msg.xid;
        match msg.body {
            Message::Hello(_) | Message::EchoReply(_) | Message::Error(_) => {}
            Message::EchoRequest(data) => {
                dp.counters.echo_requests += 1;
                self.reply(dp, out, xid, Message::EchoReply(data));
            }
            Message::FeaturesRequest => {
                let features = SwitchFeatures {
                    datapath_id: dp.datapath_id(),
                    n_buffers: 0,
                    n_tables: N_TABLES,
                    auxiliary_id: 0,
                    capabilities: CAPABILITIES,
                    reserved: 0,
                };
                self.reply(dp, out, xid, Message::FeaturesReply(features));
            }
            Message::GetConfigRequest => {
                self.reply(dp, out, xid, Message::GetConfigReply(self.switch_config));
            }
            Message::SetConfig(c) => self.switch_config = c,
            Message::BarrierRequest => {
                if let Some(delay) = dp.faults.barrier_delay {
                    out.push(Output::Delay(delay));
                }
                dp.counters.barriers += 1;
                self.reply(dp, out, xid, Message::BarrierReply);
            }
            Message::RoleRequest(role) => self.handle_role(dp, xid, raw, role, out),
            Message::PacketOut(_) => {
                if self.is_slave(dp) {
                    return self.error(dp, out, xid, raw, "OFPBRC_IS_SECONDARY");
                }
                dp.counters.packet_outs += 1;
            }
            Message::FlowMod(fm) => self.handle_flow_mod(dp, xid, raw, &fm, now, out),
            Message::MultipartRequest(req) => self.handle_multipart(dp, xid, raw, req, now, out),
            Message::BundleControl(ctrl) => self.handle_bundle_control(dp, xid, raw, ctrl, now, out),
            Message::BundleAdd(add) => self.handle_bundle_add(dp, xid, raw, add, now, out),
            Message::Experimenter(x) => {
                if x.experimenter != NX_VENDOR_ID && x.experimenter != openflow::ONF_VENDOR_ID {
                    self.error(dp, out, xid, raw, "OFPBRC_BAD_VENDOR");
                } else if !(x.experimenter == NX_VENDOR_ID && NX_ACCEPTED_SUBTYPES.contains(&x.exp_type)) {
                    self.error(dp, out, xid, raw, "OFPBRC_BAD_SUBTYPE");
                }
            }
            Message::Unknown {
                msg_type: OFPT_SET_ASYNC,
                ..
            } => {}
            Message::Unknown {
                msg_type: OFPT_METER_MOD,
                ..
            } => {
                if self.is_slave(dp) {
                    self.error(dp, out, xid, raw, "OFPBRC_IS_SECONDARY");
                }
            }
            // Switch-to-controller messages, group-mods, port-mods, table
            // features and everything else an emulated switch does not
            // implement.
            _ => self.error(dp, out, xid, raw, "OFPBRC_BAD_TYPE"),
        }
    }

    fn handle_role(&mut self, dp: &mut Datapath, xid: u32, raw: &[u8], req: Role, out: &mut Vec<Output>) {
        let role = req.role;
        if role.0 > ControllerRole::SLAVE.0 {
            return self.error(dp, out, xid, raw, "OFPRRFC_BAD_ROLE");
        }
        if role != ControllerRole::NOCHANGE {
            if role != ControllerRole::EQUAL {
                // Generation ids compare as a wrapping sequence (Open
                // vSwitch's ofconn_set_primary_election_id).
                if let Some(current) = dp.generation_id
                    && (req.generation_id.wrapping_sub(current) as i64) < 0
                {
                    return self.error(dp, out, xid, raw, "OFPRRFC_STALE");
                }
                dp.generation_id = Some(req.generation_id);
            }
            dp.set_role(self.id, role);
        }
        let reply = Role {
            role: dp.role(self.id),
            generation_id: dp.generation_id.unwrap_or(u64::MAX),
        };
        self.reply(dp, out, xid, Message::RoleReply(reply));
    }

    fn count_flow_mod(dp: &mut Datapath, fm: &FlowMod) {
        let c = &mut dp.counters.flow_mods;
        match command_of(fm) {
            "add" => c.add += 1,
            "modify" => c.modify += 1,
            "modify_strict" => c.modify_strict += 1,
            "delete" => c.delete += 1,
            "delete_strict" => c.delete_strict += 1,
            _ => c.other += 1,
        }
    }

    /// Applies a validated flow-mod, with the cookie fault; the error is
    /// the OpenFlow name to send.
    fn apply(
        dp: &mut Datapath,
        spec: FlowSpec,
        now: Duration,
        undo: Option<&mut Vec<Undo>>,
    ) -> Result<Effect, String> {
        if matches!(
            spec.command,
            Command::Add | Command::Modify | Command::ModifyStrict
        ) && let Some(reject) = &dp.faults.reject_cookie
            && reject.rejects(spec.cookie)
        {
            return Err(reject.error.clone());
        }
        let max = dp.spec.max_flows;
        dp.table
            .apply(spec, millis(now), max, undo)
            .map_err(|e| e.error_name().to_string())
    }

    fn notify_removed(
        &self,
        removed: Vec<(FlowKey, FlowEntry)>,
        now: Duration,
        reason: u8,
        out: &mut Vec<Output>,
    ) {
        for (key, entry) in removed {
            let Some(stats) = flow_stats(&key, &entry, millis(now)) else {
                continue;
            };
            out.push(Output::Broadcast(Message::FlowRemoved(FlowRemoved {
                cookie: stats.cookie,
                priority: stats.priority,
                reason,
                table_id: stats.table_id,
                duration_sec: stats.duration_sec,
                duration_nsec: stats.duration_nsec,
                idle_timeout: stats.idle_timeout,
                hard_timeout: stats.hard_timeout,
                packet_count: 0,
                byte_count: 0,
                match_: stats.match_,
            })));
        }
    }

    fn handle_flow_mod(
        &mut self,
        dp: &mut Datapath,
        xid: u32,
        raw: &[u8],
        fm: &FlowMod,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        if self.is_slave(dp) {
            return self.error(dp, out, xid, raw, "OFPBRC_IS_SECONDARY");
        }
        Self::count_flow_mod(dp, fm);
        let v = self.version.unwrap_or(Version::OF13);
        let result = prepare(fm, v)
            .map_err(|r| r.0.to_string())
            .and_then(|spec| Self::apply(dp, spec, now, None));
        match result {
            Ok(effect) => self.notify_removed(effect.removed_notify, now, REASON_DELETE, out),
            Err(name) => {
                dp.counters.flow_mods_failed += 1;
                self.error(dp, out, xid, raw, &name);
            }
        }
    }

    fn handle_multipart(
        &mut self,
        dp: &mut Datapath,
        xid: u32,
        raw: &[u8],
        req: MultipartRequest,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let v = self.version.unwrap_or(Version::OF13);
        let single = |body| MultipartReply { flags: 0, body };
        match req.body {
            MultipartRequestBody::Desc => {
                let body = MultipartReplyBody::Desc(dp.description());
                self.reply(dp, out, xid, Message::MultipartReply(single(body)));
            }
            MultipartRequestBody::PortDesc => {
                let body = dp.ports.desc_reply(v);
                self.reply(dp, out, xid, Message::MultipartReply(single(body)));
            }
            MultipartRequestBody::PortStats { port_no } => {
                let uptime = millis(now).saturating_sub(dp.booted_ms);
                let body = dp.ports.stats_reply(v, port_no, uptime);
                self.reply(dp, out, xid, Message::MultipartReply(single(body)));
            }
            MultipartRequestBody::Flow(r) => {
                let Some(criteria) = self.stats_criteria(dp, xid, raw, &r, out) else {
                    return;
                };
                let now_ms = millis(now);
                let flows = dp
                    .table
                    .select(&criteria)
                    .filter_map(|(k, e)| flow_stats(k, e, now_ms))
                    .map(|mut f| {
                        // A flow added over 1.4 may carry an importance
                        // that 1.3 cannot encode.
                        if v < Version::OF14 {
                            f.importance = 0;
                        }
                        f
                    })
                    .collect();
                dp.counters.flow_stats_requests += 1;
                match split_flow_stats(v, flows, usize::from(u16::MAX)) {
                    Ok(replies) => {
                        for reply in replies {
                            dp.counters.flow_stats_replies += 1;
                            self.reply(dp, out, xid, Message::MultipartReply(reply));
                        }
                    }
                    // Only a single flow longer than a message fails, and
                    // such a flow could not have been added.
                    Err(_) => self.error(dp, out, xid, raw, "OFPBRC_EPERM"),
                }
            }
            MultipartRequestBody::Aggregate(r) => {
                let Some(criteria) = self.stats_criteria(dp, xid, raw, &r, out) else {
                    return;
                };
                let flow_count = dp.table.select(&criteria).count();
                let body = MultipartReplyBody::Aggregate(AggregateStats {
                    packet_count: 0,
                    byte_count: 0,
                    flow_count: u32::try_from(flow_count).unwrap_or(u32::MAX),
                });
                self.reply(dp, out, xid, Message::MultipartReply(single(body)));
            }
            MultipartRequestBody::Unknown { .. } => self.error(dp, out, xid, raw, "OFPBRC_BAD_STAT"),
        }
    }

    fn stats_criteria(
        &self,
        dp: &mut Datapath,
        xid: u32,
        raw: &[u8],
        r: &FlowStatsRequest,
        out: &mut Vec<Output>,
    ) -> Option<Criteria> {
        match canonicalize(&r.match_) {
            Ok(match_) => Some(Criteria {
                table_id: r.table_id,
                match_,
                strict_priority: None,
                cookie: r.cookie,
                cookie_mask: r.cookie_mask,
                out_port: r.out_port,
                out_group: r.out_group,
            }),
            Err(e) => {
                self.error(dp, out, xid, raw, e.error_name());
                None
            }
        }
    }

    fn handle_bundle_control(
        &mut self,
        dp: &mut Datapath,
        xid: u32,
        raw: &[u8],
        ctrl: BundleControl,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        if self.is_slave(dp) {
            return self.error(dp, out, xid, raw, "OFPBRC_IS_SECONDARY");
        }
        let id = ctrl.bundle_id;
        let reply_type = match ctrl.ctrl_type {
            BundleCtrlType::OPEN_REQUEST => {
                if self.bundles.remove(&id).is_some() {
                    dp.counters.bundles_discarded += 1;
                    return self.error(dp, out, xid, raw, "OFPBFC_BAD_ID");
                }
                if self.bundles.len() >= self.config.max_bundles {
                    return self.error(dp, out, xid, raw, "OFPBFC_OUT_OF_BUNDLES");
                }
                dp.counters.bundles_opened += 1;
                self.bundles.insert(
                    id,
                    Bundle {
                        flags: ctrl.flags,
                        closed: false,
                        last_used: now,
                        opened_by: error_data(raw),
                        entries: Vec::new(),
                    },
                );
                BundleCtrlType::OPEN_REPLY
            }
            BundleCtrlType::CLOSE_REQUEST => {
                let Some(bundle) = self.bundles.get_mut(&id) else {
                    return self.error(dp, out, xid, raw, "OFPBFC_BAD_ID");
                };
                let problem = if bundle.closed {
                    Some("OFPBFC_BUNDLE_CLOSED")
                } else if bundle.flags != ctrl.flags {
                    Some("OFPBFC_BAD_FLAGS")
                } else {
                    bundle.closed = true;
                    bundle.last_used = now;
                    None
                };
                if let Some(name) = problem {
                    self.bundles.remove(&id);
                    dp.counters.bundles_discarded += 1;
                    return self.error(dp, out, xid, raw, name);
                }
                BundleCtrlType::CLOSE_REPLY
            }
            BundleCtrlType::COMMIT_REQUEST => {
                let Some(bundle) = self.bundles.remove(&id) else {
                    return self.error(dp, out, xid, raw, "OFPBFC_BAD_ID");
                };
                if bundle.flags != ctrl.flags {
                    dp.counters.bundles_discarded += 1;
                    return self.error(dp, out, xid, raw, "OFPBFC_BAD_FLAGS");
                }
                if !self.commit(dp, bundle, now, out) {
                    dp.counters.bundles_failed += 1;
                    return self.error(dp, out, xid, raw, "OFPBFC_MSG_FAILED");
                }
                dp.counters.bundles_committed += 1;
                BundleCtrlType::COMMIT_REPLY
            }
            BundleCtrlType::DISCARD_REQUEST => {
                if self.bundles.remove(&id).is_none() {
                    return self.error(dp, out, xid, raw, "OFPBFC_BAD_ID");
                }
                dp.counters.bundles_discarded += 1;
                BundleCtrlType::DISCARD_REPLY
            }
            _ => return self.error(dp, out, xid, raw, "OFPBFC_BAD_TYPE"),
        };
        // Open vSwitch answers with flags 0 whatever the request's flags.
        let reply = BundleControl::new(id, reply_type, 0);
        self.reply(dp, out, xid, Message::BundleControl(reply));
    }

    /// Applies every message of `bundle` or, if one fails, none: sends the
    /// failing message's error and returns `false`.
    fn commit(&mut self, dp: &mut Datapath, bundle: Bundle, now: Duration, out: &mut Vec<Output>) -> bool {
        let mut undo = Vec::new();
        let mut removed = Vec::new();
        let mut packet_outs = 0;
        for entry in bundle.entries {
            let Some(spec) = entry.flow else {
                packet_outs += 1;
                continue;
            };
            match Self::apply(dp, spec, now, Some(&mut undo)) {
                Ok(effect) => removed.extend(effect.removed_notify),
                Err(name) => {
                    dp.table.revert(undo);
                    dp.counters.flow_mods_failed += 1;
                    self.error(dp, out, entry.xid, &entry.request, &name);
                    return false;
                }
            }
        }
        dp.counters.packet_outs += packet_outs;
        // Atomic or not, ordered or not, a bundle is applied here in the
        // order of addition, all at once.
        self.notify_removed(removed, now, REASON_DELETE, out);
        true
    }

    fn handle_bundle_add(
        &mut self,
        dp: &mut Datapath,
        xid: u32,
        raw: &[u8],
        add: BundleAdd,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        if self.is_slave(dp) {
            return self.error(dp, out, xid, raw, "OFPBRC_IS_SECONDARY");
        }
        let inner = *add.message;
        if Some(inner.version) != self.version {
            return self.error(dp, out, xid, raw, "OFPBFC_BAD_VERSION");
        }
        if inner.xid != xid {
            return self.error(dp, out, xid, raw, "OFPBFC_MSG_BAD_XID");
        }
        let flow = match &inner.body {
            Message::FlowMod(fm) => {
                Self::count_flow_mod(dp, fm);
                match prepare(fm, inner.version) {
                    Ok(spec) => Some(spec),
                    Err(refusal) => {
                        dp.counters.flow_mods_failed += 1;
                        return self.error(dp, out, xid, raw, refusal.0);
                    }
                }
            }
            Message::PacketOut(_) => None,
            _ => return self.error(dp, out, xid, raw, "OFPBFC_MSG_UNSUP"),
        };
        let open_bundles = self.bundles.len();
        let problem = match self.bundles.get_mut(&add.bundle_id) {
            None if open_bundles >= self.config.max_bundles => Some(("OFPBFC_OUT_OF_BUNDLES", false)),
            None => {
                // Open vSwitch opens a bundle implicitly on its first add.
                dp.counters.bundles_opened += 1;
                self.bundles.insert(
                    add.bundle_id,
                    Bundle {
                        flags: add.flags,
                        closed: false,
                        last_used: now,
                        opened_by: error_data(raw),
                        entries: Vec::new(),
                    },
                );
                None
            }
            Some(b) if b.closed => Some(("OFPBFC_BUNDLE_CLOSED", true)),
            Some(b) if b.flags != add.flags => Some(("OFPBFC_BAD_FLAGS", true)),
            Some(b) if b.entries.len() >= self.config.max_bundle_messages => {
                Some(("OFPBFC_MSG_TOO_MANY", true))
            }
            Some(_) => None,
        };
        if let Some((name, drop_bundle)) = problem {
            if drop_bundle {
                self.bundles.remove(&add.bundle_id);
                dp.counters.bundles_discarded += 1;
            }
            return self.error(dp, out, xid, raw, name);
        }
        if let Some(bundle) = self.bundles.get_mut(&add.bundle_id) {
            bundle.last_used = now;
            bundle.entries.push(BundleEntry {
                xid,
                request: error_data(raw).into_boxed_slice(),
                flow,
            });
        }
    }

    /// Time-driven work at `now`: echo probes and dead-peer detection,
    /// bundle expiry, flow timeouts.
    pub fn tick(&mut self, dp: &mut Datapath, now: Duration, out: &mut Vec<Output>) {
        if self.version.is_none() {
            // A controller that accepts but never says HELLO is as dead as
            // one that stops answering echoes.
            if let Some(interval) = self.config.echo_interval
                && now.saturating_sub(self.last_rx) >= 2 * interval
            {
                out.push(Output::Close(CloseReason::PeerDead(2 * interval)));
            }
            return;
        }
        if let Some(interval) = self.config.echo_interval {
            match self.probe_sent_at {
                Some(sent) if now.saturating_sub(sent) >= interval => {
                    out.push(Output::Close(CloseReason::PeerDead(interval)));
                    return;
                }
                None if now.saturating_sub(self.last_rx) >= interval => {
                    self.probe_sent_at = Some(now);
                    dp.counters.echo_probes += 1;
                    let xid = self.xid();
                    self.reply(dp, out, xid, Message::EchoRequest(Vec::new()));
                }
                _ => {}
            }
        }
        let timeout = self.config.bundle_idle_timeout;
        let expired: Vec<u32> = self
            .bundles
            .iter()
            .filter(|(_, b)| now.saturating_sub(b.last_used) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(bundle) = self.bundles.remove(&id) {
                dp.counters.bundles_discarded += 1;
                let xid = bundle
                    .opened_by
                    .get(4..8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_be_bytes);
                self.error(dp, out, xid, &bundle.opened_by, "OFPBFC_TIMEOUT");
            }
        }
        for (key, entry, reason) in dp.table.expire(millis(now)) {
            if entry.flags & openflow::flow::flow_mod_flags::SEND_FLOW_REM != 0 {
                self.notify_removed(vec![(key, entry)], now, reason, out);
            }
        }
    }

    /// When [`Session::tick`] next has something to do (at the latest);
    /// `None` if only bundle and flow expiry remain, which the caller
    /// checks at its own pace.
    pub fn next_deadline(&self) -> Option<Duration> {
        let interval = self.config.echo_interval?;
        Some(match (self.version, self.probe_sent_at) {
            (None, _) => self.last_rx + 2 * interval,
            (Some(_), Some(sent)) => sent + interval,
            (Some(_), None) => self.last_rx + interval,
        })
    }

    /// Adapts an asynchronous message for this connection: `None` if the
    /// connection is not negotiated yet, or is a slave and the message is a
    /// flow-removed (Open vSwitch's default asynchronous configuration).
    pub fn async_message(&mut self, dp: &mut Datapath, body: &Message) -> Option<OfpMessage> {
        let v = self.version?;
        let body = match body {
            Message::FlowRemoved(_) if self.is_slave(dp) => return None,
            Message::FlowRemoved(_) => {
                dp.counters.flow_removed_sent += 1;
                body.clone()
            }
            Message::PortStatus(status) => port_status_message(status, v),
            other => other.clone(),
        };
        dp.counters.messages_sent += 1;
        // Asynchronous messages carry xid 0, as Open vSwitch sends them.
        Some(OfpMessage::new(v, 0, body))
    }

    /// Releases what the connection held in the switch; call once when the
    /// connection ends, however it ends.
    pub fn close(&mut self, dp: &mut Datapath) {
        dp.counters.bundles_discarded += self.bundles.len() as u64;
        self.bundles.clear();
        if dp.detach(self.id) {
            dp.counters.disconnects += 1;
        }
        self.version = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::SwitchSpec;
    use crate::faults::Faults;
    use openflow::flow::flow_mod_flags;
    use openflow::{Match, OxmField};

    const T0: Duration = Duration::ZERO;

    fn datapath() -> Datapath {
        let spec = SwitchSpec {
            index: 0,
            datapath_id: 42,
            name: "emu0".into(),
            ports: 2,
            port_prefix: "vm".into(),
            max_flows: None,
        };
        Datapath::new(spec, Faults::default(), 0)
    }

    fn bytes(version: Version, xid: u32, body: Message) -> Vec<u8> {
        OfpMessage::new(version, xid, body).to_bytes().unwrap()
    }

    /// A session negotiated at OpenFlow 1.3, and its switch.
    fn negotiated() -> (Session, Datapath) {
        let mut dp = datapath();
        let mut s = Session::new(1, SessionConfig::default(), T0);
        let mut out = Vec::new();
        s.start(&mut dp, &mut out);
        let hello = bytes(
            Version::OF13,
            1,
            Message::Hello(Hello::with_versions(&[Version::OF13])),
        );
        s.handle(&mut dp, &hello, T0, &mut out);
        assert_eq!(s.version(), Some(Version::OF13));
        (s, dp)
    }

    fn handle(s: &mut Session, dp: &mut Datapath, raw: &[u8], now: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        s.handle(dp, raw, now, &mut out);
        out
    }

    fn error_names(out: &[Output]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send(OfpMessage {
                    version,
                    body: Message::Error(e),
                    ..
                }) => Some(e.code.describe(*version)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn negotiation_fails_cleanly() {
        let mut dp = datapath();
        let mut s = Session::new(1, SessionConfig::default(), T0);
        let hello10 = bytes(
            Version::OF10,
            1,
            Message::Hello(Hello::with_versions(&[Version::OF10])),
        );
        let out = handle(&mut s, &mut dp, &hello10, T0);
        assert_eq!(error_names(&out), vec!["OFPHFC_INCOMPATIBLE"]);
        assert!(matches!(
            out.last(),
            Some(Output::Close(CloseReason::VersionMismatch(_)))
        ));

        let mut s = Session::new(2, SessionConfig::default(), T0);
        let out = handle(
            &mut s,
            &mut dp,
            &bytes(Version::OF13, 1, Message::FeaturesRequest),
            T0,
        );
        assert_eq!(
            out,
            vec![Output::Close(CloseReason::NotHello("OFPT_FEATURES_REQUEST"))]
        );
        assert_eq!(dp.connections(), 0);
    }

    #[test]
    fn bad_versions_and_bodies_are_refused_without_closing() {
        let (mut s, mut dp) = negotiated();
        let out = handle(
            &mut s,
            &mut dp,
            &bytes(Version::OF14, 5, Message::BarrierRequest),
            T0,
        );
        assert_eq!(error_names(&out), vec!["OFPBRC_BAD_VERSION"]);
        // A flow-mod cut short after its header: framing holds, body does not.
        let mut raw = bytes(Version::OF13, 6, Message::FlowMod(FlowMod::delete_all()));
        raw.truncate(20);
        raw[2..4].copy_from_slice(&20u16.to_be_bytes());
        let out = handle(&mut s, &mut dp, &raw, T0);
        assert_eq!(error_names(&out), vec!["OFPBRC_BAD_LEN"]);
        let out = handle(
            &mut s,
            &mut dp,
            &bytes(Version::OF13, 7, Message::EchoRequest(vec![9])),
            T0,
        );
        assert!(matches!(&out[0], Output::Send(m) if m.body == Message::EchoReply(vec![9]) && m.xid == 7));
    }

    #[test]
    fn roles_without_a_generation_and_bad_roles() {
        let (mut s, mut dp) = negotiated();
        let ask = |role| {
            bytes(
                Version::OF13,
                3,
                Message::RoleRequest(Role {
                    role,
                    generation_id: 5,
                }),
            )
        };
        let out = handle(&mut s, &mut dp, &ask(ControllerRole::NOCHANGE), T0);
        let reply = Message::RoleReply(Role {
            role: ControllerRole::EQUAL,
            generation_id: u64::MAX,
        });
        assert!(matches!(&out[0], Output::Send(m) if m.body == reply));
        let out = handle(&mut s, &mut dp, &ask(ControllerRole(7)), T0);
        assert_eq!(error_names(&out), vec!["OFPRRFC_BAD_ROLE"]);
        // EQUAL neither checks nor sets the generation id.
        handle(&mut s, &mut dp, &ask(ControllerRole::EQUAL), T0);
        assert_eq!(dp.generation_id, None);
    }

    #[test]
    fn bundles_misused_and_forgotten() {
        let (mut s, mut dp) = negotiated();
        let ctrl = |t, flags| {
            bytes(
                Version::OF13,
                10,
                Message::BundleControl(BundleControl::new(1, t, flags)),
            )
        };
        let add = |flags| {
            let inner = OfpMessage::new(Version::OF13, 11, Message::FlowMod(FlowMod::delete_all()));
            bytes(
                Version::OF13,
                11,
                Message::BundleAdd(BundleAdd {
                    bundle_id: 1,
                    flags,
                    message: Box::new(inner),
                    properties: Vec::new(),
                }),
            )
        };
        handle(&mut s, &mut dp, &ctrl(BundleCtrlType::OPEN_REQUEST, 1), T0);
        assert_eq!(
            error_names(&handle(&mut s, &mut dp, &add(3), T0)),
            vec!["OFPBFC_BAD_FLAGS"]
        );
        // The bad add discarded the bundle; a new add opens one implicitly.
        assert!(handle(&mut s, &mut dp, &add(1), T0).is_empty());
        handle(&mut s, &mut dp, &ctrl(BundleCtrlType::CLOSE_REQUEST, 1), T0);
        assert_eq!(
            error_names(&handle(&mut s, &mut dp, &add(1), T0)),
            vec!["OFPBFC_BUNDLE_CLOSED"]
        );
        assert_eq!(
            error_names(&handle(&mut s, &mut dp, &ctrl(BundleCtrlType::OPEN_REPLY, 0), T0)),
            vec!["OFPBFC_BAD_TYPE"]
        );
        // A bundle left alone expires with OFPBFC_TIMEOUT.
        handle(&mut s, &mut dp, &ctrl(BundleCtrlType::OPEN_REQUEST, 0), T0);
        let mut out = Vec::new();
        s.tick(&mut dp, Duration::from_secs(11), &mut out);
        assert!(
            error_names(&out).contains(&"OFPBFC_TIMEOUT".to_string()),
            "{out:?}"
        );
        assert_eq!(
            error_names(&handle(
                &mut s,
                &mut dp,
                &ctrl(BundleCtrlType::COMMIT_REQUEST, 0),
                T0
            )),
            vec!["OFPBFC_BAD_ID"]
        );
    }

    #[test]
    fn idle_controllers_are_probed_then_dropped() {
        let (mut s, mut dp) = negotiated();
        let mut out = Vec::new();
        s.tick(&mut dp, Duration::from_secs(4), &mut out);
        assert!(out.is_empty());
        assert_eq!(s.next_deadline(), Some(Duration::from_secs(5)));
        s.tick(&mut dp, Duration::from_secs(5), &mut out);
        assert!(matches!(&out[0], Output::Send(m) if matches!(m.body, Message::EchoRequest(_))));
        out.clear();
        s.tick(&mut dp, Duration::from_secs(10), &mut out);
        assert_eq!(
            out,
            vec![Output::Close(CloseReason::PeerDead(Duration::from_secs(5)))]
        );
        s.close(&mut dp);
        assert_eq!((dp.connections(), dp.counters().disconnects), (0, 1));
    }

    #[test]
    fn expired_flows_are_announced() {
        let (mut s, mut dp) = negotiated();
        let fm = FlowMod {
            flags: flow_mod_flags::SEND_FLOW_REM,
            hard_timeout: 2,
            ..FlowMod::add(1, 9, Match::new(vec![OxmField::EthType(0x0806)]), Vec::new())
        };
        handle(
            &mut s,
            &mut dp,
            &bytes(Version::OF13, 4, Message::FlowMod(fm)),
            T0,
        );
        assert_eq!(dp.flow_count(), 1);
        let mut out = Vec::new();
        s.tick(&mut dp, Duration::from_secs(3), &mut out);
        let removed = out.iter().find_map(|o| match o {
            Output::Broadcast(Message::FlowRemoved(r)) => Some(r.clone()),
            _ => None,
        });
        assert_eq!(
            removed.map(|r| (r.reason, r.table_id, r.priority)),
            Some((1, 1, 9))
        );
        assert_eq!(dp.flow_count(), 0);
    }
}
