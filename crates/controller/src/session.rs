//! One switch connection: the I/O around the pure [`Reconciler`].
//!
//! The session negotiates OpenFlow 1.3, learns the datapath id, ports and
//! actual flows, then loops: bytes from the switch are framed and handled
//! (echo, errors, port status, packet-ins, replies that complete a
//! reconcile round), a newly published desired set starts a round, commands
//! (packet-out) are sent, and a timer keeps the connection alive or drops a
//! silent peer. Malformed OpenFlow ends the session with a logged error;
//! other sessions are unaffected.
//!
//! With roles ([`crate::role`]), only a session whose switch granted it
//! MASTER (or that claims none) writes. Becoming master, it reads the
//! switch's flows again (another master changed them meanwhile), waits for
//! the publisher's release if configured, and reconciles from there; a
//! slave, or a session the switch refused or demoted, sends no flow-mod
//! and no packet-out.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openflow::error_msg::ErrorCode;
use openflow::multipart::{MultipartAssembler, MultipartReplyBody, MultipartRequest, MultipartRequestBody};
use openflow::port::port_reason;
use openflow::{
    ControllerRole, DecodeError, ErrorMsg, FlowModCommand, FlowStats, FlowStatsRequest, Hello, Message,
    OfpMessage, PacketOut, Port, SwitchConfig, Version, message_length, negotiate_version,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};

use crate::ratelimit::TokenBucket;
use crate::reconcile::{Next, Reconciler, RoundReport};
use crate::role::{RoleClaim, SwitchRole, async_config, is_slave_error};
use crate::stats::{PendingStats, StatsResult};
use crate::{ControllerEvent, Published, SessionHandle, Shared, SwitchInfo};

/// The only version flowgate speaks; 1.4 bundles are used through the
/// OpenFlow 1.3 extension Open vSwitch implements.
const VERSION: Version = Version::OF13;

/// Sent-message names remembered for explaining errors.
const RECENT_REQUESTS: usize = 1024;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// A write buffer larger than this is let go once written.
const MAX_IDLE_BUFFER: usize = 256 * 1024;

/// Requests from the rest of the controller to a session.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send a packet out of the switch.
    PacketOut(PacketOut),
    /// Read flow statistics; the assembled answer goes to `reply`.
    FlowStats {
        request: FlowStatsRequest,
        reply: tokio::sync::oneshot::Sender<StatsResult>,
    },
    /// Another session took over this datapath id: end this one.
    Close,
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("connection closed by the switch")]
    Closed,
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed OpenFlow from the switch: {0}")]
    Malformed(#[from] DecodeError),
    #[error("cannot encode a message: {0}")]
    Encode(#[from] openflow::EncodeError),
    #[error("no common OpenFlow version (the switch offers {0:?})")]
    NoCommonVersion(Vec<Version>),
    #[error("the switch did not complete the handshake in time")]
    HandshakeTimeout,
    #[error("the switch stopped answering (silent for {0:?})")]
    Dead(Duration),
    #[error("replaced by a new connection from the same switch")]
    Replaced,
    #[error("unexpected {0} during the handshake")]
    Unexpected(&'static str),
    #[error("cannot read the flows of the switch after becoming its master: {0}")]
    FlowsUnread(String),
}

/// What a session may do on its switch, and how far it got.
enum Mode {
    /// Reads and writes: the reconciler keeps the flow table equal to the
    /// desired set, once the hold (if any) is over.
    Writer {
        // Boxed: the other modes are a few bytes.
        reconciler: Box<Reconciler>,
        hold: Option<Hold>,
    },
    /// Asked the switch for MASTER (or EQUAL) with this xid; reads only
    /// until it answers.
    Claiming { xid: u32 },
    /// Granted MASTER; reading the switch's flows (another master may have
    /// changed them since this session last knew) before reconciling.
    Reading { answer: oneshot::Receiver<StatsResult> },
    /// SLAVE, or refused: reads only.
    Reader,
}

/// A wait for the publisher's release before reconciling.
struct Hold {
    ticket: u64,
    until: Instant,
}

/// Completes with the answer of the flow read of [`Mode::Reading`]; never
/// in another mode.
async fn flows_read(mode: &mut Mode) -> Result<Vec<FlowStats>, String> {
    match mode {
        Mode::Reading { answer } => match answer.await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err("the request was dropped".into()),
        },
        _ => std::future::pending().await,
    }
}

/// Frames OpenFlow messages out of a byte stream.
#[derive(Default)]
struct Frames {
    buf: Vec<u8>,
    pos: usize,
}

impl Frames {
    fn push(&mut self, data: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > READ_CHUNK {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    fn next(&mut self) -> Result<Option<OfpMessage>, DecodeError> {
        let rest = &self.buf[self.pos..];
        match message_length(rest)? {
            Some(len) if len <= rest.len() => {
                let msg = OfpMessage::decode(&rest[..len]);
                self.pos += len;
                msg.map(Some)
            }
            _ => Ok(None),
        }
    }
}

/// The writing side of a session plus the state needed to describe what was
/// sent.
struct Writer<S> {
    wr: WriteHalf<S>,
    out: Vec<u8>,
    next_xid: u32,
    recent: VecDeque<(u32, &'static str)>,
}

impl<S: AsyncWrite> Writer<S> {
    fn xid(&mut self) -> u32 {
        self.next_xid = self.next_xid.wrapping_add(1).max(1);
        self.next_xid
    }

    async fn send(&mut self, msgs: &[OfpMessage]) -> Result<(), SessionError> {
        self.out.clear();
        for m in msgs {
            m.encode(&mut self.out)?;
            if self.recent.len() == RECENT_REQUESTS {
                self.recent.pop_front();
            }
            self.recent.push_back((m.xid, m.body.name()));
        }
        self.wr.write_all(&self.out).await?;
        // A first sync sends a bundle of every flow at once; keeping a
        // buffer that size for each of a thousand switches would cost more
        // than their flows.
        if self.out.capacity() > MAX_IDLE_BUFFER {
            self.out = Vec::new();
        }
        Ok(())
    }

    async fn send_one(&mut self, body: Message) -> Result<u32, SessionError> {
        let xid = self.xid();
        self.send(&[OfpMessage::new(VERSION, xid, body)]).await?;
        Ok(xid)
    }

    fn describe(&self, xid: u32) -> &'static str {
        self.recent
            .iter()
            .rev()
            .find(|(x, _)| *x == xid)
            .map(|(_, name)| *name)
            .unwrap_or("an unknown request")
    }
}

/// Runs a session until the connection ends.
pub(crate) async fn run<S>(shared: Arc<Shared>, stream: S, peer: String)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
    let (rd, wr) = tokio::io::split(stream);
    let mut session = Session {
        role_rx: shared.role.subscribe(),
        shared: shared.clone(),
        peer: peer.clone(),
        rd,
        frames: Frames::default(),
        chunk: vec![0; READ_CHUNK],
        writer: Writer {
            wr,
            out: Vec::new(),
            next_xid: 0,
            recent: VecDeque::new(),
        },
        datapath_id: None,
        last_heard: Instant::now(),
        stats: PendingStats::default(),
        synced_once: false,
        async_set: false,
    };
    let result = session.run().await;
    let dpid = session.datapath_id;
    match (&result, dpid) {
        (Err(SessionError::Malformed(e)), _) => {
            shared.metrics.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%peer, datapath_id = dpid.map(|d| format!("{d:016x}")), error = %e, "dropping switch: malformed OpenFlow");
        }
        (Err(SessionError::Dead(_)), _) => {
            shared.metrics.dead_peers.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, datapath_id = dpid.map(|d| format!("{d:016x}")), error = %result.as_ref().err().map(ToString::to_string).unwrap_or_default(), "dropping switch");
        }
        (Err(e), Some(d)) => {
            tracing::info!(%peer, datapath_id = format_args!("{d:016x}"), reason = %e, "switch disconnected")
        }
        (Err(e), None) => {
            tracing::warn!(%peer, reason = %e, "connection ended before the handshake completed")
        }
        (Ok(()), _) => {}
    }
}

struct Session<S> {
    shared: Arc<Shared>,
    peer: String,
    rd: ReadHalf<S>,
    frames: Frames,
    chunk: Vec<u8>,
    writer: Writer<S>,
    datapath_id: Option<u64>,
    last_heard: Instant,
    /// Flow statistics requests sent on behalf of the rest of the controller.
    stats: PendingStats,
    /// Whether the switch has been in sync since it connected (logged once).
    synced_once: bool,
    /// The role to claim.
    role_rx: watch::Receiver<RoleClaim>,
    /// Whether the asynchronous configuration for roles was sent.
    async_set: bool,
}

/// How the switch answered the role claimed in the handshake.
enum RoleAnswer {
    /// No role claimed.
    None,
    /// Claimed with this xid; no answer seen yet.
    Pending(u32),
    /// Granted.
    Granted(openflow::Role),
    /// Refused.
    Refused(ErrorMsg),
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> Session<S> {
    /// Reads until one whole message is framed (handshake only).
    async fn recv(&mut self) -> Result<OfpMessage, SessionError> {
        loop {
            if let Some(msg) = self.frames.next()? {
                self.last_heard = Instant::now();
                return Ok(msg);
            }
            let n = self.rd.read(&mut self.chunk).await?;
            if n == 0 {
                return Err(SessionError::Closed);
            }
            self.frames.push(&self.chunk[..n]);
        }
    }

    /// Receives the handshake reply for which `want` returns `Some`,
    /// answering echo requests and ignoring asynchronous messages meanwhile.
    async fn recv_reply<T>(
        &mut self,
        role: &mut RoleAnswer,
        mut want: impl FnMut(OfpMessage) -> Option<T>,
    ) -> Result<T, SessionError> {
        loop {
            let msg = self.recv().await?;
            if let RoleAnswer::Pending(xid) = *role
                && msg.xid == xid
            {
                match msg.body {
                    Message::RoleReply(granted) => *role = RoleAnswer::Granted(granted),
                    Message::Error(e) => *role = RoleAnswer::Refused(e),
                    _ => {}
                }
                continue;
            }
            match &msg.body {
                Message::EchoRequest(data) => {
                    let reply = OfpMessage::new(VERSION, msg.xid, Message::EchoReply(data.clone()));
                    self.writer.send(&[reply]).await?;
                }
                Message::Error(e) => {
                    tracing::warn!(peer = %self.peer, error = %e.display(msg.version), "error during the handshake");
                }
                _ => {
                    if let Some(v) = want(msg) {
                        return Ok(v);
                    }
                }
            }
        }
    }

    async fn run(&mut self) -> Result<(), SessionError> {
        let timeout = self.shared.config.handshake_timeout;
        let (dpid, ports, actual, claim, answer) = tokio::time::timeout(timeout, self.handshake())
            .await
            .map_err(|_| SessionError::HandshakeTimeout)??;
        self.main_loop(dpid, ports, actual, claim, answer).await
    }

    /// Sends a role request for `claim` (after the asynchronous
    /// configuration, the first time); returns its xid.
    async fn claim_role(&mut self, claim: RoleClaim) -> Result<Option<u32>, SessionError> {
        let Some(role) = claim.request() else {
            return Ok(None);
        };
        let mut requests = Vec::with_capacity(2);
        if !std::mem::replace(&mut self.async_set, true) {
            requests.push(OfpMessage::new(
                VERSION,
                self.writer.xid(),
                Message::SetAsync(async_config()),
            ));
        }
        let xid = self.writer.xid();
        requests.push(OfpMessage::new(VERSION, xid, Message::RoleRequest(role)));
        self.writer.send(&requests).await?;
        Ok(Some(xid))
    }

    #[allow(clippy::type_complexity)]
    async fn handshake(
        &mut self,
    ) -> Result<(u64, Vec<Port>, Vec<FlowStats>, RoleClaim, RoleAnswer), SessionError> {
        self.writer
            .send_one(Message::Hello(Hello::with_versions(&[VERSION])))
            .await?;
        let hello = self.recv().await?;
        let Message::Hello(h) = &hello.body else {
            return Err(SessionError::Unexpected(hello.body.name()));
        };
        if negotiate_version(&[VERSION], hello.version, h).is_none() {
            let error = ErrorMsg {
                code: ErrorCode::from_name(VERSION, "OFPHFC_INCOMPATIBLE")
                    .unwrap_or(ErrorCode::Standard { err_type: 0, code: 0 }),
                data: b"flowgate speaks OpenFlow 1.3".to_vec(),
            };
            self.writer.send_one(Message::Error(error)).await?;
            return Err(SessionError::NoCommonVersion(h.versions(hello.version)));
        }
        let features_xid = self.writer.send_one(Message::FeaturesRequest).await?;
        let mut answer = RoleAnswer::None;
        let dpid = self
            .recv_reply(&mut answer, |m| match m.body {
                Message::FeaturesReply(f) if m.xid == features_xid => Some(f.datapath_id),
                _ => None,
            })
            .await?;
        self.datapath_id = Some(dpid);

        let config = OfpMessage::new(
            VERSION,
            self.writer.xid(),
            Message::SetConfig(SwitchConfig {
                flags: 0,
                miss_send_len: openflow::action::OFPCML_NO_BUFFER,
            }),
        );
        self.writer.send(&[config]).await?;
        // The role goes before the flow read: the switch answers in order,
        // so flows read once MASTER is granted are the ones to reconcile.
        let claim = *self.role_rx.borrow_and_update();
        if let Some(xid) = self.claim_role(claim).await? {
            answer = RoleAnswer::Pending(xid);
        }
        let mut requests = Vec::with_capacity(2);
        let ports_xid = self.writer.xid();
        requests.push(OfpMessage::new(
            VERSION,
            ports_xid,
            Message::MultipartRequest(MultipartRequest::new(MultipartRequestBody::PortDesc)),
        ));
        let flows_xid = self.writer.xid();
        requests.push(OfpMessage::new(
            VERSION,
            flows_xid,
            Message::MultipartRequest(MultipartRequest::new(MultipartRequestBody::Flow(
                FlowStatsRequest::all(),
            ))),
        ));
        self.writer.send(&requests).await?;

        let mut assembler = MultipartAssembler::new();
        let mut ports = None;
        let mut flows = None;
        while ports.is_none() || flows.is_none() {
            let body = self
                .recv_reply(&mut answer, |m| match m.body {
                    Message::MultipartReply(r) if m.xid == ports_xid || m.xid == flows_xid => {
                        assembler.push(m.xid, r)
                    }
                    _ => None,
                })
                .await?;
            match body {
                MultipartReplyBody::PortDesc(p) => ports = Some(p),
                MultipartReplyBody::Flow(f) => flows = Some(f),
                other => tracing::debug!(?other, "unexpected multipart reply during the handshake"),
            }
        }
        Ok((
            dpid,
            ports.unwrap_or_default(),
            flows.unwrap_or_default(),
            claim,
            answer,
        ))
    }

    async fn main_loop(
        &mut self,
        dpid: u64,
        ports: Vec<Port>,
        actual: Vec<FlowStats>,
        claim: RoleClaim,
        answer: RoleAnswer,
    ) -> Result<(), SessionError> {
        let shared = self.shared.clone();
        let config = shared.config.clone();
        let mut desired_rx = shared.desired.subscribe(dpid);
        let published: Published = desired_rx.borrow_and_update().clone();
        let mut generation = published.generation;
        let flows_on_switch = actual.len();
        // What the handshake's answer to the claimed role allows.
        let (role, mut mode) = match (claim, answer) {
            (RoleClaim::Equal, _) => (SwitchRole::Equal, None),
            (RoleClaim::Master { .. }, RoleAnswer::Granted(r)) if r.role == ControllerRole::MASTER => {
                (SwitchRole::Master, None)
            }
            (RoleClaim::Master { .. }, RoleAnswer::Pending(xid)) => {
                (SwitchRole::Claiming, Some(Mode::Claiming { xid }))
            }
            (RoleClaim::Slave { .. }, RoleAnswer::Granted(r)) if r.role == ControllerRole::SLAVE => {
                (SwitchRole::Slave, Some(Mode::Reader))
            }
            (RoleClaim::Slave { .. }, RoleAnswer::Pending(_)) => (SwitchRole::Slave, Some(Mode::Reader)),
            (_, RoleAnswer::Refused(e)) => {
                tracing::warn!(
                    datapath_id = format_args!("{dpid:016x}"),
                    ?claim,
                    error = %e.code.describe(VERSION),
                    "the switch refused the role claimed: it knows a newer master"
                );
                (SwitchRole::Fenced, Some(Mode::Reader))
            }
            _ => (SwitchRole::Fenced, Some(Mode::Reader)),
        };
        // A writer from the start reconciles against the flows read in the
        // handshake, after the publisher's release if so configured.
        let mut hold_ticket = None;
        let mut mode = match mode.take() {
            Some(mode) => mode,
            None => {
                let hold = self.new_hold(&config);
                hold_ticket = hold.as_ref().map(|h| h.ticket);
                Mode::Writer {
                    reconciler: Box::new(Reconciler::new(
                        VERSION,
                        actual,
                        published.flows,
                        config.use_bundles,
                    )),
                    hold,
                }
            }
        };
        let (synced_tx, synced_rx) = watch::channel(0u64);
        let (cmd_tx, mut cmd_rx) = mpsc::channel(256);
        let info = Arc::new(Mutex::new(SwitchInfo {
            datapath_id: dpid,
            peer: self.peer.clone(),
            ports: ports.clone(),
            role,
            holding: hold_ticket,
            ..SwitchInfo::default()
        }));
        let session_id = shared.next_session_id.fetch_add(1, Ordering::Relaxed);
        let previous = shared.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(
            dpid,
            SessionHandle {
                id: session_id,
                commands: cmd_tx,
                info: info.clone(),
                synced: synced_rx,
            },
        );
        if let Some(old) = previous {
            // The switch reconnected before the old connection was noticed
            // dead: the new connection wins.
            let _ = old.commands.try_send(Command::Close);
        }
        tracing::info!(
            peer = %self.peer,
            datapath_id = format_args!("{dpid:016x}"),
            ports = ports.len(),
            flows_on_switch,
            role = role.name(),
            "switch connected"
        );
        let _ = shared.events.send(ControllerEvent::SwitchConnected {
            datapath_id: dpid,
            ports,
        });
        // After SwitchConnected: the publisher learns the ports first.
        if let Some(ticket) = hold_ticket {
            let _ = shared.events.send(ControllerEvent::Holding {
                datapath_id: dpid,
                ticket,
            });
        }

        let mut packet_ins = TokenBucket::new(config.packet_in_rate, config.packet_in_burst, Instant::now());
        let mut round_started: Option<Instant> = None;
        let mut echo_outstanding = false;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        let result: Result<(), SessionError> = async {
            if let Mode::Writer { reconciler, hold: None } = &mut mode {
                self.advance(reconciler, &mut round_started, &info, &synced_tx, generation)
                    .await?;
            }
            loop {
                while let Some(msg) = self.frames.next()? {
                    self.last_heard = Instant::now();
                    echo_outstanding = false;
                    let Some(msg) = self.stats.offer(msg, VERSION) else {
                        continue;
                    };
                    if self.on_role_message(dpid, &msg, &mut mode, &info, &synced_tx).await? {
                        continue;
                    }
                    let mut consumed = false;
                    if let Mode::Writer { reconciler, .. } = &mut mode {
                        let (by_round, report) = reconciler.on_message(&msg);
                        consumed = by_round;
                        if let Some(report) = report {
                            self.finish_round(dpid, report, &mut round_started);
                            self.advance(reconciler, &mut round_started, &info, &synced_tx, generation)
                                .await?;
                        }
                    }
                    self.handle(dpid, msg, consumed, &info, &mut packet_ins).await?;
                }
                tokio::select! {
                    n = self.rd.read(&mut self.chunk) => {
                        let n = n?;
                        if n == 0 {
                            return Err(SessionError::Closed);
                        }
                        self.frames.push(&self.chunk[..n]);
                    }
                    changed = desired_rx.changed() => {
                        if changed.is_ok() {
                            let published = desired_rx.borrow_and_update().clone();
                            generation = published.generation;
                            // Other modes read the latest set when they become writers.
                            if let Mode::Writer { reconciler, hold } = &mut mode {
                                if hold.as_ref().is_some_and(|h| published.released >= h.ticket) {
                                    *hold = None;
                                    set_holding(&info, None);
                                }
                                reconciler.set_desired(published.flows);
                                if hold.is_none() {
                                    self.advance(reconciler, &mut round_started, &info, &synced_tx, generation)
                                        .await?;
                                }
                            }
                        }
                    }
                    changed = self.role_rx.changed() => {
                        if changed.is_ok() {
                            let claim = *self.role_rx.borrow_and_update();
                            // Whatever was in sync was so as a writer before.
                            synced_tx.send_replace(0);
                            mode = self.reclaim(dpid, claim, &info).await?;
                        }
                    }
                    read = flows_read(&mut mode) => {
                        let actual = read.map_err(SessionError::FlowsUnread)?;
                        let published = desired_rx.borrow_and_update().clone();
                        generation = published.generation;
                        let hold = self.new_hold(&config);
                        let ticket = hold.as_ref().map(|h| h.ticket);
                        set_holding(&info, ticket);
                        tracing::info!(
                            datapath_id = format_args!("{dpid:016x}"),
                            flows_on_switch = actual.len(),
                            "read the flows of the switch as its master"
                        );
                        let mut reconciler =
                            Reconciler::new(VERSION, actual, published.flows, config.use_bundles);
                        match ticket {
                            Some(ticket) => {
                                let _ = shared.events.send(ControllerEvent::Holding {
                                    datapath_id: dpid,
                                    ticket,
                                });
                            }
                            None => {
                                self.advance(&mut reconciler, &mut round_started, &info, &synced_tx, generation)
                                    .await?;
                            }
                        }
                        mode = Mode::Writer {
                            reconciler: Box::new(reconciler),
                            hold,
                        };
                    }
                    cmd = cmd_rx.recv() => match cmd {
                        Some(Command::PacketOut(p)) => {
                            if role_of(&info).writes() {
                                self.writer.send_one(Message::PacketOut(p)).await?;
                            } else {
                                tracing::debug!(
                                    datapath_id = format_args!("{dpid:016x}"),
                                    "packet-out not sent: not this switch's master"
                                );
                            }
                        }
                        Some(Command::FlowStats { request, reply }) => {
                            // Slaves may read flows and counters too.
                            let body = MultipartRequestBody::Flow(request);
                            let xid = self
                                .writer
                                .send_one(Message::MultipartRequest(MultipartRequest::new(body)))
                                .await?;
                            self.stats.register(xid, reply);
                        }
                        Some(Command::Close) | None => return Err(SessionError::Replaced),
                    },
                    _ = tick.tick() => {
                        self.stats.prune();
                        if let Mode::Writer { reconciler, hold } = &mut mode
                            && hold.as_ref().is_some_and(|h| Instant::now() >= h.until)
                        {
                            *hold = None;
                            set_holding(&info, None);
                            tracing::warn!(
                                datapath_id = format_args!("{dpid:016x}"),
                                "no desired flows released for this switch in time; reconciling with what is known"
                            );
                            self.advance(reconciler, &mut round_started, &info, &synced_tx, generation)
                                .await?;
                        }
                        let silent = self.last_heard.elapsed();
                        if silent >= config.dead_after {
                            return Err(SessionError::Dead(silent));
                        }
                        if silent >= config.echo_interval && !echo_outstanding {
                            self.writer.send_one(Message::EchoRequest(b"flowgate".to_vec())).await?;
                            echo_outstanding = true;
                        }
                    }
                }
            }
        }
        .await;

        let mut sessions = shared.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.get(&dpid).is_some_and(|h| h.id == session_id) {
            sessions.remove(&dpid);
            drop(sessions);
            let _ = shared
                .events
                .send(ControllerEvent::SwitchDisconnected { datapath_id: dpid });
        }
        result
    }

    /// A wait for the publisher's release, if configured, with a new ticket.
    fn new_hold(&self, config: &crate::ControllerConfig) -> Option<Hold> {
        config.initial_desired_wait.map(|wait| Hold {
            ticket: self.shared.next_ticket.fetch_add(1, Ordering::Relaxed),
            until: Instant::now() + wait,
        })
    }

    /// Claims a new role; returns the mode the session is in until the
    /// switch answers. Giving up MASTER stops writes at once; claiming it
    /// writes nothing until the switch granted it and the flows are read.
    async fn reclaim(
        &mut self,
        dpid: u64,
        claim: RoleClaim,
        info: &Mutex<SwitchInfo>,
    ) -> Result<Mode, SessionError> {
        set_holding(info, None);
        // A claim of no role after another: EQUAL must be asked for.
        let xid = match self.claim_role(claim).await? {
            Some(xid) => xid,
            None => {
                let request = openflow::Role {
                    role: ControllerRole::EQUAL,
                    generation_id: 0,
                };
                self.writer.send_one(Message::RoleRequest(request)).await?
            }
        };
        tracing::info!(
            datapath_id = format_args!("{dpid:016x}"),
            ?claim,
            "claiming a new role"
        );
        if claim.writes() {
            self.set_role(dpid, info, SwitchRole::Claiming);
            Ok(Mode::Claiming { xid })
        } else {
            self.set_role(dpid, info, SwitchRole::Slave);
            Ok(Mode::Reader)
        }
    }

    /// Records what the switch granted and tells subscribers.
    fn set_role(&self, dpid: u64, info: &Mutex<SwitchInfo>, role: SwitchRole) {
        let previous = std::mem::replace(&mut info.lock().unwrap_or_else(|e| e.into_inner()).role, role);
        if previous != role {
            tracing::info!(
                datapath_id = format_args!("{dpid:016x}"),
                role = role.name(),
                "role on the switch"
            );
            let _ = self.shared.events.send(ControllerEvent::RoleChanged {
                datapath_id: dpid,
                role,
            });
        }
    }

    /// Handles what the switch says about roles: the answer to a claim, a
    /// refusal because another controller is master (then this session
    /// stops writing), a notice that another controller took over. Returns
    /// whether the message was about roles.
    async fn on_role_message(
        &mut self,
        dpid: u64,
        msg: &OfpMessage,
        mode: &mut Mode,
        info: &Mutex<SwitchInfo>,
        synced: &watch::Sender<u64>,
    ) -> Result<bool, SessionError> {
        // Leaving the writer's mode: the switch is no longer known in sync
        // by this session until it reconciles again.
        let demote = |mode: &mut Mode| {
            synced.send_replace(0);
            *mode = Mode::Reader;
        };
        let claiming = match mode {
            Mode::Claiming { xid } => Some(*xid),
            _ => None,
        };
        match &msg.body {
            Message::RoleReply(granted) if claiming == Some(msg.xid) => {
                if granted.role == ControllerRole::SLAVE {
                    demote(mode);
                    self.set_role(dpid, info, SwitchRole::Fenced);
                    return Ok(true);
                }
                let role = if granted.role == ControllerRole::MASTER {
                    SwitchRole::Master
                } else {
                    SwitchRole::Equal
                };
                // Granted: read the flows another master may have changed.
                let (reply, answer) = oneshot::channel();
                let body = MultipartRequestBody::Flow(FlowStatsRequest::all());
                let xid = self
                    .writer
                    .send_one(Message::MultipartRequest(MultipartRequest::new(body)))
                    .await?;
                self.stats.register(xid, reply);
                // Before the event: whoever waits for this session to be in
                // sync as master must not see an earlier success.
                synced.send_replace(0);
                *mode = Mode::Reading { answer };
                self.set_role(dpid, info, role);
                Ok(true)
            }
            Message::RoleReply(granted) => {
                if granted.role == ControllerRole::SLAVE && matches!(mode, Mode::Reader) {
                    self.set_role(dpid, info, SwitchRole::Slave);
                }
                Ok(true)
            }
            Message::Error(e) if claiming == Some(msg.xid) => {
                tracing::warn!(
                    datapath_id = format_args!("{dpid:016x}"),
                    error = %e.code.describe(VERSION),
                    "the switch refused MASTER: it knows a newer master"
                );
                demote(mode);
                self.set_role(dpid, info, SwitchRole::Fenced);
                Ok(true)
            }
            Message::Error(e) if is_slave_error(e, VERSION) => {
                self.shared.metrics.errors.inc([&e.code.describe(VERSION)]);
                if !matches!(mode, Mode::Reader) {
                    tracing::warn!(
                        datapath_id = format_args!("{dpid:016x}"),
                        "the switch says another controller is its master; writing nothing more"
                    );
                    demote(mode);
                    self.set_role(dpid, info, SwitchRole::Fenced);
                }
                Ok(true)
            }
            Message::Experimenter(x) if demoted(x) => {
                if !matches!(mode, Mode::Reader) {
                    tracing::warn!(
                        datapath_id = format_args!("{dpid:016x}"),
                        "another controller became the switch's master; writing nothing more"
                    );
                    demote(mode);
                    self.set_role(dpid, info, SwitchRole::Fenced);
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Sends the next round of flow-mods, if there is one and none is in
    /// flight.
    async fn start_round(
        &mut self,
        reconciler: &mut Reconciler,
        round_started: &mut Option<Instant>,
    ) -> Result<(), SessionError> {
        let writer = &mut self.writer;
        let next = reconciler.next(|| writer.xid());
        if let Next::Send(msgs) = next {
            for m in &msgs {
                let command = match &m.body {
                    Message::FlowMod(f) => Some(f.command),
                    Message::BundleAdd(b) => match &b.message.body {
                        Message::FlowMod(f) => Some(f.command),
                        _ => None,
                    },
                    _ => None,
                };
                let slot = match command {
                    Some(FlowModCommand::Add) => 0,
                    Some(FlowModCommand::ModifyStrict | FlowModCommand::Modify) => 1,
                    Some(_) => 2,
                    None => continue,
                };
                self.shared.metrics.flow_mods_sent[slot].fetch_add(1, Ordering::Relaxed);
            }
            *round_started = Some(Instant::now());
            self.writer.send(&msgs).await?;
        }
        Ok(())
    }

    fn finish_round(&mut self, dpid: u64, report: RoundReport, round_started: &mut Option<Instant>) {
        let metrics = &self.shared.metrics;
        metrics.reconciles.fetch_add(1, Ordering::Relaxed);
        if let Some(started) = round_started.take() {
            let took = started.elapsed();
            metrics.reconcile_duration.observe(took);
            tracing::info!(
                datapath_id = format_args!("{dpid:016x}"),
                adds = report.adds,
                modifies = report.modifies,
                deletes = report.deletes,
                rejected = report.rejected.len(),
                bundled = report.bundled,
                took_us = took.as_micros() as u64,
                "flows reconciled"
            );
        }
        for r in &report.rejected {
            let name = r.error.code.describe(VERSION);
            metrics.errors.inc([&name]);
            tracing::warn!(
                datapath_id = format_args!("{dpid:016x}"),
                cookie = format_args!("{:#x}", r.flow.cookie()),
                table = r.flow.table(),
                priority = r.flow.priority(),
                flow_match = %r.flow.match_(),
                error = %name,
                "switch rejected a flow; it stays out until its owner changes it"
            );
        }
        for e in &report.other_errors {
            let name = e.code.describe(VERSION);
            metrics.errors.inc([&name]);
            tracing::warn!(datapath_id = format_args!("{dpid:016x}"), error = %name, "bundle failed");
        }
        let _ = self.shared.events.send(ControllerEvent::Reconciled {
            datapath_id: dpid,
            report: Arc::new(report),
        });
    }

    /// Starts the next round if one is due, and tells waiters when the
    /// switch holds the desired set of `generation`.
    async fn advance(
        &mut self,
        reconciler: &mut Reconciler,
        round_started: &mut Option<Instant>,
        info: &Mutex<SwitchInfo>,
        synced: &watch::Sender<u64>,
        generation: u64,
    ) -> Result<(), SessionError> {
        self.start_round(reconciler, round_started).await?;
        self.update_info(info, reconciler);
        if reconciler.in_sync() {
            let _ = synced.send(generation);
            if !std::mem::replace(&mut self.synced_once, true) {
                tracing::info!(
                    datapath_id = format_args!("{:016x}", self.datapath_id.unwrap_or_default()),
                    flows = reconciler.installed_len(),
                    "switch in sync"
                );
            }
        }
        Ok(())
    }

    fn update_info(&self, info: &Mutex<SwitchInfo>, reconciler: &Reconciler) {
        let mut info = info.lock().unwrap_or_else(|e| e.into_inner());
        info.flows_desired = reconciler.desired_len();
        info.flows_installed = reconciler.installed_len();
        info.flows_rejected = reconciler.rejected_len();
        info.bundles = reconciler.uses_bundles();
    }

    /// Handles a message the reconciler did not need (or needed but others
    /// should see too, such as errors).
    async fn handle(
        &mut self,
        dpid: u64,
        msg: OfpMessage,
        consumed_by_round: bool,
        info: &Mutex<SwitchInfo>,
        packet_ins: &mut TokenBucket,
    ) -> Result<(), SessionError> {
        match msg.body {
            Message::EchoRequest(data) => {
                let reply = OfpMessage::new(VERSION, msg.xid, Message::EchoReply(data));
                self.writer.send(&[reply]).await?;
            }
            Message::Error(e) if !consumed_by_round => {
                let name = e.code.describe(msg.version);
                self.shared.metrics.errors.inc([&name]);
                let request = e
                    .offending_header()
                    .map(|h| self.writer.describe(h.xid))
                    .unwrap_or("an unknown request");
                tracing::warn!(datapath_id = format_args!("{dpid:016x}"), error = %name, %request, "switch reported an error");
            }
            Message::PacketIn(p) => {
                let reason = match p.reason {
                    0 => "no_match",
                    1 => "action",
                    2 => "invalid_ttl",
                    _ => "other",
                };
                self.shared.metrics.packet_ins.inc([reason]);
                if packet_ins.try_take(Instant::now()) {
                    let _ = self.shared.events.send(ControllerEvent::PacketIn {
                        datapath_id: dpid,
                        packet_in: Arc::new(p),
                    });
                } else {
                    self.shared
                        .metrics
                        .packet_ins_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Message::PortStatus(status) => {
                {
                    let mut info = info.lock().unwrap_or_else(|e| e.into_inner());
                    info.ports.retain(|p| p.port_no != status.desc.port_no);
                    if status.reason != port_reason::DELETE {
                        info.ports.push(status.desc.clone());
                        info.ports.sort_by_key(|p| p.port_no);
                    }
                }
                tracing::info!(
                    datapath_id = format_args!("{dpid:016x}"),
                    port = %status.desc.name,
                    port_no = status.desc.port_no.0,
                    reason = status.reason,
                    up = status.desc.is_up(),
                    "port status"
                );
                let _ = self.shared.events.send(ControllerEvent::PortStatus {
                    datapath_id: dpid,
                    reason: status.reason,
                    port: status.desc,
                });
            }
            _ => {}
        }
        Ok(())
    }
}

/// `ONFT_ROLE_STATUS`: Open vSwitch's notice (OpenFlow 1.3, as an ONF
/// extension) that this controller's role changed because another one
/// claimed MASTER.
const ONFT_ROLE_STATUS: u32 = 1911;

/// Whether `x` tells this controller it is a slave now.
fn demoted(x: &openflow::Experimenter) -> bool {
    x.experimenter == openflow::ONF_VENDOR_ID
        && x.exp_type == ONFT_ROLE_STATUS
        && x.data.get(..4) == Some(&ControllerRole::SLAVE.0.to_be_bytes()[..])
}

fn role_of(info: &Mutex<SwitchInfo>) -> SwitchRole {
    info.lock().unwrap_or_else(|e| e.into_inner()).role
}

fn set_holding(info: &Mutex<SwitchInfo>, ticket: Option<u64>) {
    info.lock().unwrap_or_else(|e| e.into_inner()).holding = ticket;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_join_messages() {
        let a = OfpMessage::new(VERSION, 1, Message::BarrierRequest)
            .to_bytes()
            .unwrap();
        let b = OfpMessage::new(VERSION, 2, Message::EchoRequest(vec![1, 2, 3]))
            .to_bytes()
            .unwrap();
        let mut stream = a.clone();
        stream.extend(&b);
        let mut frames = Frames::default();
        frames.push(&stream[..5]);
        assert!(frames.next().unwrap().is_none());
        frames.push(&stream[5..]);
        assert_eq!(frames.next().unwrap().unwrap().xid, 1);
        assert_eq!(frames.next().unwrap().unwrap().xid, 2);
        assert!(frames.next().unwrap().is_none());
    }

    #[test]
    fn a_bad_length_is_an_error() {
        let mut frames = Frames::default();
        frames.push(&[4, 0, 0, 3, 0, 0, 0, 1]);
        assert!(frames.next().is_err());
    }
}
