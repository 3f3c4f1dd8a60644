//! A minimal OpenFlow controller over tokio, written with the codec, for
//! driving emulated switches from tests: it accepts a switch's connection,
//! says HELLO, and offers request/response helpers with timeouts.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::time::Duration;

use openflow::{
    BundleAdd, BundleControl, BundleCtrlType, ErrorMsg, FlowMod, FlowStats, FlowStatsRequest, Hello, Message,
    MultipartAssembler, MultipartReplyBody, MultipartRequest, MultipartRequestBody, OfpMessage,
    SwitchFeatures, Version, message_length,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A listening controller.
pub struct Controller {
    pub listener: TcpListener,
}

impl Controller {
    pub async fn bind() -> Controller {
        Controller {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    /// `tcp:127.0.0.1:PORT` for the emulator.
    pub fn target(&self) -> switch_emulator::Target {
        format!("tcp:{}", self.listener.local_addr().unwrap())
            .parse()
            .unwrap()
    }

    /// Accepts the next switch and negotiates one of `versions`.
    pub async fn accept(&self, versions: &[Version]) -> Conn {
        let (stream, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("a switch connects in time")
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Conn::handshake(stream, versions).await
    }
}

/// One switch connection, seen from the controller.
pub struct Conn {
    pub stream: TcpStream,
    pub version: Version,
    next_xid: u32,
    rbuf: Vec<u8>,
    /// Messages received while waiting for something else.
    pub backlog: VecDeque<OfpMessage>,
    /// Answer the switch's echo requests automatically.
    pub auto_echo: bool,
}

impl Conn {
    async fn handshake(stream: TcpStream, versions: &[Version]) -> Conn {
        let mut conn = Conn {
            stream,
            version: *versions.iter().max().unwrap(),
            next_xid: 1000,
            rbuf: Vec::new(),
            backlog: VecDeque::new(),
            auto_echo: true,
        };
        let hello = OfpMessage::new(conn.version, 1, Message::Hello(Hello::with_versions(versions)));
        conn.send_msg(&hello).await;
        let theirs = conn.read_message().await.expect("the switch says hello");
        let Message::Hello(h) = &theirs.body else {
            panic!("expected HELLO, got {theirs:?}")
        };
        conn.version = openflow::negotiate_version(versions, theirs.version, h).expect("a common version");
        conn
    }

    pub fn xid(&mut self) -> u32 {
        self.next_xid += 1;
        self.next_xid
    }

    pub async fn send(&mut self, body: Message) -> u32 {
        let xid = self.xid();
        self.send_msg(&OfpMessage::new(self.version, xid, body)).await;
        xid
    }

    pub async fn send_msg(&mut self, msg: &OfpMessage) {
        let bytes = msg.to_bytes().unwrap();
        self.stream.write_all(&bytes).await.unwrap();
    }

    /// The next message off the wire, or `None` when the switch closed the
    /// connection.
    pub async fn read_message(&mut self) -> Option<OfpMessage> {
        loop {
            if let Some(len) = message_length(&self.rbuf).unwrap()
                && self.rbuf.len() >= len
            {
                let msg = OfpMessage::decode(&self.rbuf[..len]).unwrap();
                self.rbuf.drain(..len);
                if self.auto_echo
                    && let Message::EchoRequest(data) = &msg.body
                {
                    let reply = OfpMessage::new(self.version, msg.xid, Message::EchoReply(data.clone()));
                    self.send_msg(&reply).await;
                    continue;
                }
                return Some(msg);
            }
            let n = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.rbuf))
                .await
                .expect("the switch answers in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    pub async fn recv(&mut self) -> OfpMessage {
        if let Some(m) = self.backlog.pop_front() {
            return m;
        }
        self.read_message().await.expect("connection open")
    }

    /// The first message satisfying `pred`; others wait in the backlog.
    pub async fn recv_where(&mut self, mut pred: impl FnMut(&OfpMessage) -> bool) -> OfpMessage {
        if let Some(i) = self.backlog.iter().position(&mut pred) {
            return self.backlog.remove(i).unwrap();
        }
        loop {
            let msg = self.read_message().await.expect("connection open");
            if pred(&msg) {
                return msg;
            }
            self.backlog.push_back(msg);
        }
    }

    /// Sends a barrier; returns everything that arrived before its reply.
    pub async fn barrier(&mut self) -> Vec<OfpMessage> {
        let xid = self.send(Message::BarrierRequest).await;
        let mut before: Vec<OfpMessage> = self.backlog.drain(..).collect();
        loop {
            let msg = self.read_message().await.expect("connection open");
            if msg.xid == xid && msg.body == Message::BarrierReply {
                return before;
            }
            before.push(msg);
        }
    }

    /// Sends `body`, then a barrier; returns the errors for it.
    pub async fn transact(&mut self, body: Message) -> Vec<ErrorMsg> {
        let xid = self.send(body).await;
        self.errors_for(xid).await
    }

    /// Waits for a barrier and returns the errors for request `xid`.
    pub async fn errors_for(&mut self, xid: u32) -> Vec<ErrorMsg> {
        let mut errors = Vec::new();
        for m in self.barrier().await {
            match m.body {
                Message::Error(e) if m.xid == xid => errors.push(e),
                _ => self.backlog.push_back(m),
            }
        }
        errors
    }

    pub async fn features(&mut self) -> SwitchFeatures {
        let xid = self.send(Message::FeaturesRequest).await;
        match self.recv_where(|m| m.xid == xid).await.body {
            Message::FeaturesReply(f) => f,
            other => panic!("expected features, got {other:?}"),
        }
    }

    /// A multipart request's assembled reply and how many messages it took.
    pub async fn multipart(&mut self, body: MultipartRequestBody) -> (MultipartReplyBody, usize) {
        let xid = self
            .send(Message::MultipartRequest(MultipartRequest::new(body)))
            .await;
        let mut assembler = MultipartAssembler::new();
        let mut parts = 0;
        loop {
            match self.recv_where(|m| m.xid == xid).await.body {
                Message::MultipartReply(reply) => {
                    parts += 1;
                    if let Some(done) = assembler.push(xid, reply) {
                        return (done, parts);
                    }
                }
                other => panic!("multipart request failed: {other:?}"),
            }
        }
    }

    pub async fn dump_flows(&mut self) -> Vec<FlowStats> {
        self.dump_flows_where(FlowStatsRequest::all()).await.0
    }

    pub async fn dump_flows_where(&mut self, request: FlowStatsRequest) -> (Vec<FlowStats>, usize) {
        match self.multipart(MultipartRequestBody::Flow(request)).await {
            (MultipartReplyBody::Flow(flows), parts) => (flows, parts),
            other => panic!("expected flow stats, got {other:?}"),
        }
    }

    /// Opens bundle `id`, adds `flows`, commits; returns every message that
    /// arrived up to a following barrier (replies and errors) and the xids
    /// of the adds and of the commit.
    pub async fn bundle(&mut self, id: u32, flags: u16, flows: Vec<FlowMod>) -> BundleOutcome {
        let open = self
            .send(Message::BundleControl(BundleControl::new(
                id,
                BundleCtrlType::OPEN_REQUEST,
                flags,
            )))
            .await;
        let mut add_xids = Vec::new();
        for fm in flows {
            let xid = self.xid();
            add_xids.push(xid);
            let add = BundleAdd {
                bundle_id: id,
                flags,
                message: Box::new(OfpMessage::new(self.version, xid, Message::FlowMod(fm))),
                properties: Vec::new(),
            };
            self.send_msg(&OfpMessage::new(self.version, xid, Message::BundleAdd(add)))
                .await;
        }
        let commit = self
            .send(Message::BundleControl(BundleControl::new(
                id,
                BundleCtrlType::COMMIT_REQUEST,
                flags,
            )))
            .await;
        let messages = self.barrier().await;
        BundleOutcome {
            open,
            add_xids,
            commit,
            messages,
        }
    }
}

/// What a bundle transaction produced.
pub struct BundleOutcome {
    pub open: u32,
    pub add_xids: Vec<u32>,
    pub commit: u32,
    pub messages: Vec<OfpMessage>,
}

impl BundleOutcome {
    /// Error names with the xid they refer to.
    pub fn errors(&self, version: Version) -> Vec<(u32, String)> {
        self.messages
            .iter()
            .filter_map(|m| match &m.body {
                Message::Error(e) => Some((m.xid, e.code.describe(version))),
                _ => None,
            })
            .collect()
    }

    /// The bundle control replies, by type.
    pub fn replies(&self) -> Vec<(u32, BundleCtrlType)> {
        self.messages
            .iter()
            .filter_map(|m| match &m.body {
                Message::BundleControl(b) => Some((m.xid, b.ctrl_type)),
                _ => None,
            })
            .collect()
    }
}
