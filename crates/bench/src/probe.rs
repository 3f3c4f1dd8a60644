//! An OpenFlow observer of one bridge: connects to the bridge's management
//! socket (`RUNDIR/BRIDGE.mgmt`) as a second, passive client and asks
//! aggregate flow statistics — how many flows are installed, in all or
//! under one cookie. This is how the harness sees, from outside flowgate,
//! that a change has reached the switch: every flowgate flow carries its
//! owner's cookie, and owners change atomically (one bundle per round).
//!
//! Blocking and single-threaded on purpose: a probe is a few dozen bytes
//! each way, answered by Open vSwitch in microseconds, and many can be
//! pipelined on one connection.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use openflow::{
    FlowStatsRequest, Hello, Message, MultipartReplyBody, MultipartRequest, MultipartRequestBody, OfpMessage,
    Version, message_length, negotiate_version,
};

use crate::error::{Error, Result};

/// How long one answer may take before the probe gives up.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to a bridge's management socket.
pub struct Probe {
    stream: UnixStream,
    buf: Vec<u8>,
    next_xid: u32,
}

impl Probe {
    /// Connects and negotiates OpenFlow 1.3.
    pub fn connect(socket: &Path) -> Result<Probe> {
        let stream = UnixStream::connect(socket)
            .map_err(|e| Error::io(format!("connecting to {}", socket.display()), e))?;
        stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .map_err(|e| Error::io("setting a read timeout", e))?;
        let mut probe = Probe {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            next_xid: 1,
        };
        probe.send(&[Message::Hello(Hello::with_versions(&[Version::OF13]))])?;
        loop {
            let msg = probe.read_message()?;
            match msg.body {
                Message::Hello(hello) => {
                    return match negotiate_version(&[Version::OF13], msg.version, &hello) {
                        Some(Version::OF13) => Ok(probe),
                        _ => Err(Error::Probe(format!(
                            "the bridge does not speak OpenFlow 1.3 (its hello: {:?})",
                            msg.version
                        ))),
                    };
                }
                Message::Error(e) => return Err(Error::Probe(format!("hello refused: {e:?}"))),
                _ => {}
            }
        }
    }

    fn send(&mut self, messages: &[Message]) -> Result<u32> {
        let first = self.next_xid;
        let mut bytes = Vec::with_capacity(messages.len() * 64);
        for m in messages {
            let xid = self.next_xid;
            self.next_xid = self.next_xid.wrapping_add(1);
            OfpMessage::new(Version::OF13, xid, m.clone())
                .encode(&mut bytes)
                .map_err(|e| Error::Probe(format!("encoding {}: {e:?}", m.name())))?;
        }
        self.stream
            .write_all(&bytes)
            .map_err(|e| Error::io("writing to the bridge", e))?;
        Ok(first)
    }

    fn read_message(&mut self) -> Result<OfpMessage> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if let Some(len) =
                message_length(&self.buf).map_err(|e| Error::Probe(format!("bad framing: {e:?}")))?
                && self.buf.len() >= len
            {
                let msg = OfpMessage::decode(&self.buf[..len])
                    .map_err(|e| Error::Probe(format!("undecodable message: {e:?}")))?;
                self.buf.drain(..len);
                if let Message::EchoRequest(payload) = &msg.body {
                    let reply = OfpMessage::new(msg.version, msg.xid, Message::EchoReply(payload.clone()));
                    let bytes = reply
                        .to_bytes()
                        .map_err(|e| Error::Probe(format!("encoding an echo reply: {e:?}")))?;
                    self.stream
                        .write_all(&bytes)
                        .map_err(|e| Error::io("writing to the bridge", e))?;
                    continue;
                }
                return Ok(msg);
            }
            let n = self
                .stream
                .read(&mut chunk)
                .map_err(|e| Error::io("reading from the bridge", e))?;
            if n == 0 {
                return Err(Error::Probe("the bridge closed the connection".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Flow counts under each `(cookie, mask)`, asked all at once
    /// (pipelined) and answered in order.
    pub fn counts(&mut self, selectors: &[(u64, u64)]) -> Result<Vec<u32>> {
        if selectors.is_empty() {
            return Ok(Vec::new());
        }
        let requests: Vec<Message> = selectors
            .iter()
            .map(|&(cookie, cookie_mask)| {
                Message::MultipartRequest(MultipartRequest::new(MultipartRequestBody::Aggregate(
                    FlowStatsRequest {
                        cookie,
                        cookie_mask,
                        ..FlowStatsRequest::all()
                    },
                )))
            })
            .collect();
        let first = self.send(&requests)?;
        let mut counts = vec![None; selectors.len()];
        let mut missing = selectors.len();
        while missing > 0 {
            let msg = self.read_message()?;
            let index = msg.xid.wrapping_sub(first) as usize;
            match msg.body {
                Message::MultipartReply(reply) if index < counts.len() => {
                    if let MultipartReplyBody::Aggregate(stats) = reply.body
                        && counts[index].is_none()
                    {
                        counts[index] = Some(stats.flow_count);
                        missing -= 1;
                    }
                }
                Message::Error(e) if index < counts.len() => {
                    return Err(Error::Probe(format!("aggregate request refused: {e:?}")));
                }
                // Port status and other asynchronous messages.
                _ => {}
            }
        }
        Ok(counts.into_iter().map(|c| c.unwrap_or(0)).collect())
    }

    /// A barrier round trip: the switch has processed everything sent before.
    pub fn barrier(&mut self) -> Result<()> {
        let xid = self.send(&[Message::BarrierRequest])?;
        loop {
            let msg = self.read_message()?;
            if msg.xid == xid {
                return match msg.body {
                    Message::BarrierReply => Ok(()),
                    other => Err(Error::Probe(format!("barrier answered with {}", other.name()))),
                };
            }
        }
    }

    /// Every flow on the bridge.
    pub fn flow_count(&mut self) -> Result<u32> {
        Ok(self.counts(&[(0, 0)])?[0])
    }

    /// Whether any flow carries exactly `cookie`.
    pub fn present(&mut self, cookie: u64) -> Result<bool> {
        Ok(self.counts(&[(cookie, u64::MAX)])?[0] > 0)
    }
}
