//! One switch connection: the I/O around the pure [`Reconciler`].
//!
//! The session negotiates OpenFlow 1.3, learns the datapath id, ports and
//! actual flows, then loops: bytes from the switch are framed and handled
//! (echo, errors, port status, packet-ins, replies that complete a
//! reconcile round), a newly published desired set starts a round, commands
//! (packet-out) are sent, and a timer keeps the connection alive or drops a
//! silent peer. Malformed OpenFlow ends the session with a logged error;
//! other sessions are unaffected.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openflow::error_msg::ErrorCode;
use openflow::multipart::{MultipartAssembler, MultipartReplyBody, MultipartRequest, MultipartRequestBody};
use openflow::port::port_reason;
use openflow::{
    DecodeError, ErrorMsg, FlowModCommand, FlowStats, FlowStatsRequest, Hello, Message, OfpMessage,
    PacketOut, Port, Role, SwitchConfig, Version, message_length, negotiate_version,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};

use crate::ratelimit::TokenBucket;
use crate::reconcile::{Next, Reconciler, RoundReport};
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
        mut want: impl FnMut(OfpMessage) -> Option<T>,
    ) -> Result<T, SessionError> {
        loop {
            let msg = self.recv().await?;
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
        let (dpid, ports, actual) = tokio::time::timeout(timeout, self.handshake())
            .await
            .map_err(|_| SessionError::HandshakeTimeout)??;
        self.main_loop(dpid, ports, actual).await
    }

    async fn handshake(&mut self) -> Result<(u64, Vec<Port>, Vec<FlowStats>), SessionError> {
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
        let dpid = self
            .recv_reply(|m| match m.body {
                Message::FeaturesReply(f) if m.xid == features_xid => Some(f.datapath_id),
                _ => None,
            })
            .await?;
        self.datapath_id = Some(dpid);

        let mut requests = vec![OfpMessage::new(
            VERSION,
            self.writer.xid(),
            Message::SetConfig(SwitchConfig {
                flags: 0,
                miss_send_len: openflow::action::OFPCML_NO_BUFFER,
            }),
        )];
        if let Some((role, generation_id)) = self.shared.config.role {
            requests.push(OfpMessage::new(
                VERSION,
                self.writer.xid(),
                Message::RoleRequest(Role { role, generation_id }),
            ));
        }
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
                .recv_reply(|m| match m.body {
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
        Ok((dpid, ports.unwrap_or_default(), flows.unwrap_or_default()))
    }

    async fn main_loop(
        &mut self,
        dpid: u64,
        ports: Vec<Port>,
        actual: Vec<FlowStats>,
    ) -> Result<(), SessionError> {
        let shared = self.shared.clone();
        let config = shared.config.clone();
        let mut desired_rx = shared.desired.subscribe(dpid);
        let published: Published = desired_rx.borrow_and_update().clone();
        let mut generation = published.generation;
        let mut reconciler = Reconciler::new(VERSION, actual, published.flows, config.use_bundles);
        let (synced_tx, synced_rx) = watch::channel(0u64);
        let (cmd_tx, mut cmd_rx) = mpsc::channel(256);
        let info = Arc::new(Mutex::new(SwitchInfo {
            datapath_id: dpid,
            peer: self.peer.clone(),
            ports: ports.clone(),
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
            flows_on_switch = reconciler.installed_len(),
            flows_desired = reconciler.desired_len(),
            "switch connected"
        );
        let _ = shared.events.send(ControllerEvent::SwitchConnected {
            datapath_id: dpid,
            ports,
        });

        let mut packet_ins = TokenBucket::new(config.packet_in_rate, config.packet_in_burst, Instant::now());
        let mut round_started: Option<Instant> = None;
        let mut echo_outstanding = false;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        // Until the publisher has seen this switch (or the wait is over),
        // the desired set may lack what depends on the switch's ports.
        let mut hold_until = config.initial_desired_wait.map(|wait| Instant::now() + wait);
        let releases_at_connect = published.releases;
        let result: Result<(), SessionError> = async {
            if hold_until.is_none() {
                self.advance(&mut reconciler, &mut round_started, &info, &synced_tx, generation)
                    .await?;
            }
            loop {
                while let Some(msg) = self.frames.next()? {
                    self.last_heard = Instant::now();
                    echo_outstanding = false;
                    let Some(msg) = self.stats.offer(msg, VERSION) else {
                        continue;
                    };
                    let (consumed, report) = reconciler.on_message(&msg);
                    if let Some(report) = report {
                        self.finish_round(dpid, report, &mut round_started);
                        self.advance(&mut reconciler, &mut round_started, &info, &synced_tx, generation)
                            .await?;
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
                            if published.releases > releases_at_connect {
                                hold_until = None;
                            }
                            generation = published.generation;
                            reconciler.set_desired(published.flows);
                            if hold_until.is_none() {
                                self.advance(&mut reconciler, &mut round_started, &info, &synced_tx, generation)
                                    .await?;
                            }
                        }
                    }
                    cmd = cmd_rx.recv() => match cmd {
                        Some(Command::PacketOut(p)) => {
                            self.writer.send_one(Message::PacketOut(p)).await?;
                        }
                        Some(Command::FlowStats { request, reply }) => {
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
                        if hold_until.is_some_and(|t| Instant::now() >= t) {
                            hold_until = None;
                            tracing::warn!(
                                datapath_id = format_args!("{dpid:016x}"),
                                "no desired flows published for this switch in time; reconciling with what is known"
                            );
                            self.advance(&mut reconciler, &mut round_started, &info, &synced_tx, generation)
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
            metrics.errors.inc(&name);
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
            metrics.errors.inc(&name);
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
                self.shared.metrics.errors.inc(&name);
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
                self.shared.metrics.packet_ins.inc(reason);
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
