//! A minimal blocking OpenFlow peer for the oracle tests: connects to a
//! bridge's management socket (as `ovs-ofctl` does) or accepts the bridge's
//! own controller connection, and exchanges messages encoded by the codec
//! under test.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use openflow::{
    ErrorMsg, FlowMod, FlowStats, FlowStatsRequest, Hello, Message, MultipartAssembler, MultipartReplyBody,
    MultipartRequest, MultipartRequestBody, OfpMessage, Version, message_length,
};

/// How long any single read may block before the test fails.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One OpenFlow connection.
pub struct Conn {
    stream: UnixStream,
    pub version: Version,
    next_xid: u32,
    /// Messages received while waiting for something else.
    pub backlog: Vec<OfpMessage>,
}

impl Conn {
    /// Connects to a passive socket (a bridge's `BR.mgmt`) and negotiates
    /// `version`.
    pub fn connect(path: &std::path::Path, version: Version) -> Conn {
        let stream = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        Conn::handshake(stream, version)
    }

    /// Accepts the bridge's active connection to `listener`.
    pub fn accept(listener: &UnixListener, version: Version) -> Conn {
        listener.set_nonblocking(false).unwrap();
        let (stream, _) = listener.accept().unwrap();
        Conn::handshake(stream, version)
    }

    fn handshake(stream: UnixStream, version: Version) -> Conn {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let mut conn = Conn {
            stream,
            version,
            next_xid: 1,
            backlog: Vec::new(),
        };
        conn.send(Message::Hello(Hello::with_versions(&[version])));
        let hello = conn.recv();
        let Message::Hello(h) = &hello.body else {
            panic!("expected a hello, got {hello:?}")
        };
        assert!(
            h.versions(hello.version).contains(&version),
            "switch does not offer {version}: {hello:?}"
        );
        conn
    }

    pub fn xid(&mut self) -> u32 {
        self.next_xid += 1;
        self.next_xid
    }

    /// Sends `body` with a fresh xid and returns the xid.
    pub fn send(&mut self, body: Message) -> u32 {
        let xid = self.xid();
        self.send_msg(&OfpMessage::new(self.version, xid, body));
        xid
    }

    pub fn send_msg(&mut self, msg: &OfpMessage) {
        let bytes = msg.to_bytes().unwrap();
        self.send_raw(&bytes);
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next message from the switch (backlog first).
    pub fn recv(&mut self) -> OfpMessage {
        if !self.backlog.is_empty() {
            return self.backlog.remove(0);
        }
        self.read_message()
    }

    fn read_message(&mut self) -> OfpMessage {
        let mut header = [0u8; 8];
        self.stream
            .read_exact(&mut header)
            .expect("reading an OpenFlow header");
        let len = message_length(&header).unwrap().unwrap();
        let mut buf = header.to_vec();
        buf.resize(len, 0);
        self.stream
            .read_exact(&mut buf[8..])
            .expect("reading an OpenFlow body");
        OfpMessage::decode(&buf).unwrap_or_else(|e| panic!("cannot decode {}: {e}", hex(&buf)))
    }

    /// Waits for the first message satisfying `pred`, keeping others in the
    /// backlog.
    pub fn recv_where(&mut self, mut pred: impl FnMut(&OfpMessage) -> bool) -> OfpMessage {
        if let Some(i) = self.backlog.iter().position(&mut pred) {
            return self.backlog.remove(i);
        }
        loop {
            let msg = self.read_message();
            if pred(&msg) {
                return msg;
            }
            self.answer_echo(&msg);
            self.backlog.push(msg);
        }
    }

    fn answer_echo(&mut self, msg: &OfpMessage) {
        if let Message::EchoRequest(data) = &msg.body {
            let reply = OfpMessage::new(self.version, msg.xid, Message::EchoReply(data.clone()));
            self.send_msg(&reply);
        }
    }

    /// Sends a barrier and returns every message that arrived before its
    /// reply (errors for earlier requests, replies, async messages).
    pub fn barrier(&mut self) -> Vec<OfpMessage> {
        let xid = self.send(Message::BarrierRequest);
        let mut before = std::mem::take(&mut self.backlog);
        loop {
            let msg = self.read_message();
            if msg.xid == xid && matches!(msg.body, Message::BarrierReply) {
                return before;
            }
            self.answer_echo(&msg);
            before.push(msg);
        }
    }

    /// Sends `body` followed by a barrier and returns the errors the switch
    /// sent for it.
    pub fn transact(&mut self, body: Message) -> Vec<ErrorMsg> {
        let xid = self.send(body);
        self.errors_for(xid)
    }

    /// Waits for a barrier and returns the errors for request `xid`.
    pub fn errors_for(&mut self, xid: u32) -> Vec<ErrorMsg> {
        let msgs = self.barrier();
        let mut errors = Vec::new();
        for m in msgs {
            match m.body {
                Message::Error(e) if m.xid == xid => errors.push(e),
                _ => self.backlog.push(m),
            }
        }
        errors
    }

    /// Installs a flow, panicking with the error's name if the switch
    /// refuses it.
    pub fn flow_mod(&mut self, fm: FlowMod) {
        let errors = self.transact(Message::FlowMod(fm.clone()));
        assert!(
            errors.is_empty(),
            "switch refused the flow with {}: {fm:?}",
            errors
                .iter()
                .map(|e| e.display(self.version).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    /// Sends a multipart request and assembles the reply; also returns how
    /// many reply messages it took.
    pub fn multipart(&mut self, body: MultipartRequestBody) -> (MultipartReplyBody, usize) {
        let xid = self.send(Message::MultipartRequest(MultipartRequest::new(body)));
        let mut assembler = MultipartAssembler::new();
        let mut parts = 0;
        loop {
            let msg = self.recv_where(|m| m.xid == xid);
            match msg.body {
                Message::MultipartReply(reply) => {
                    parts += 1;
                    if let Some(done) = assembler.push(xid, reply) {
                        return (done, parts);
                    }
                }
                Message::Error(e) => panic!("multipart request failed: {}", e.display(self.version)),
                other => panic!("unexpected reply {other:?}"),
            }
        }
    }

    /// Every flow on the switch.
    pub fn dump_flows(&mut self) -> Vec<FlowStats> {
        match self
            .multipart(MultipartRequestBody::Flow(FlowStatsRequest::all()))
            .0
        {
            MultipartReplyBody::Flow(flows) => flows,
            other => panic!("expected flow stats, got {other:?}"),
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
