//! Flow statistics read on demand: a session sends a flow statistics
//! request for whoever asked, reassembles the (possibly multi-part) reply
//! and hands it back. The session only frames and forwards; the
//! bookkeeping of outstanding requests lives here, free of I/O.

use std::collections::{BTreeMap, HashMap};

use openflow::multipart::{MultipartAssembler, MultipartReplyBody};
use openflow::{FlowStats, Message, OfpMessage, Version};
use tokio::sync::oneshot;

/// What a flow statistics request returned.
pub(crate) type StatsResult = Result<Vec<FlowStats>, StatsError>;

/// Why a switch gave no flow statistics.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StatsError {
    /// The switch answered the request with an OpenFlow error.
    #[error("the switch refused the flow statistics request: {0}")]
    Refused(String),
    /// The switch answered with a reply of another kind.
    #[error("the switch answered a flow statistics request with a {0} reply")]
    WrongReply(&'static str),
}

/// Packet and byte counters of a set of flows, as a switch counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCounters {
    /// How many flows were summed.
    pub flows: u64,
    /// Packets they matched.
    pub packets: u64,
    /// Bytes they matched.
    pub bytes: u64,
}

impl FlowCounters {
    /// Adds one flow's counters.
    pub fn add_flow(&mut self, flow: &FlowStats) {
        self.flows += 1;
        self.packets = self.packets.saturating_add(flow.packet_count);
        self.bytes = self.bytes.saturating_add(flow.byte_count);
    }

    /// Adds another sum.
    pub fn add(&mut self, other: FlowCounters) {
        self.flows += other.flows;
        self.packets = self.packets.saturating_add(other.packets);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// Sums flows' counters per cookie.
pub fn counters_by_cookie<'a>(flows: impl IntoIterator<Item = &'a FlowStats>) -> BTreeMap<u64, FlowCounters> {
    let mut out: BTreeMap<u64, FlowCounters> = BTreeMap::new();
    for flow in flows {
        out.entry(flow.cookie).or_default().add_flow(flow);
    }
    out
}

/// The flow statistics requests a session has sent and not yet seen
/// answered, by xid.
#[derive(Debug, Default)]
pub(crate) struct PendingStats {
    waiting: HashMap<u32, oneshot::Sender<StatsResult>>,
    assembler: MultipartAssembler,
}

impl PendingStats {
    /// Remembers that the request sent with `xid` is to be answered on `reply`.
    pub(crate) fn register(&mut self, xid: u32, reply: oneshot::Sender<StatsResult>) {
        self.waiting.insert(xid, reply);
    }

    /// Takes the messages that answer an outstanding request (reply parts
    /// and errors with its xid); every other message is handed back.
    pub(crate) fn offer(&mut self, msg: OfpMessage, version: Version) -> Option<OfpMessage> {
        if !self.waiting.contains_key(&msg.xid) {
            return Some(msg);
        }
        let xid = msg.xid;
        let result = match msg.body {
            Message::MultipartReply(reply) => match self.assembler.push(xid, reply)? {
                MultipartReplyBody::Flow(flows) => Ok(flows),
                other => Err(StatsError::WrongReply(reply_name(&other))),
            },
            Message::Error(e) => {
                self.assembler.abandon(xid);
                Err(StatsError::Refused(e.code.describe(version)))
            }
            body => return Some(OfpMessage { body, ..msg }),
        };
        if let Some(reply) = self.waiting.remove(&xid) {
            // The asker may have given up waiting; nothing to tell then.
            let _ = reply.send(result);
        }
        None
    }

    /// Forgets requests whose asker stopped waiting (a switch that never
    /// answers must not make the session hold their partial replies).
    pub(crate) fn prune(&mut self) {
        let assembler = &mut self.assembler;
        self.waiting.retain(|xid, reply| {
            let keep = !reply.is_closed();
            if !keep {
                assembler.abandon(*xid);
            }
            keep
        });
    }

    /// Requests still unanswered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting.len()
    }
}

fn reply_name(body: &MultipartReplyBody) -> &'static str {
    match body {
        MultipartReplyBody::Desc(_) => "description",
        MultipartReplyBody::Flow(_) => "flow",
        MultipartReplyBody::Aggregate(_) => "aggregate",
        MultipartReplyBody::PortStats(_) => "port statistics",
        MultipartReplyBody::PortDesc(_) => "port description",
        _ => "multipart",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use openflow::ErrorMsg;
    use openflow::Match;
    use openflow::error_msg::ErrorCode;
    use openflow::multipart::MultipartReply;

    use super::*;

    const V: Version = Version::OF13;

    fn stats(cookie: u64, packets: u64) -> FlowStats {
        FlowStats {
            table_id: 0,
            duration_sec: 0,
            duration_nsec: 0,
            priority: 1,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: 0,
            importance: 0,
            cookie,
            packet_count: packets,
            byte_count: packets * 100,
            match_: Match::default(),
            instructions: vec![],
        }
    }

    fn reply(xid: u32, flows: Vec<FlowStats>, more: bool) -> OfpMessage {
        let r = MultipartReply {
            flags: if more {
                openflow::multipart::OFPMPF_REPLY_MORE
            } else {
                0
            },
            body: MultipartReplyBody::Flow(flows),
        };
        OfpMessage::new(V, xid, Message::MultipartReply(r))
    }

    #[test]
    fn a_multipart_answer_is_assembled_and_handed_to_the_asker() {
        let mut pending = PendingStats::default();
        let (tx, mut rx) = oneshot::channel();
        pending.register(7, tx);
        assert!(pending.offer(reply(7, vec![stats(1, 2)], true), V).is_none());
        assert!(rx.try_recv().is_err(), "not complete yet");
        // Someone else's message passes through untouched.
        let other = OfpMessage::new(V, 8, Message::BarrierReply);
        assert!(pending.offer(other, V).is_some());
        assert!(
            pending
                .offer(reply(7, vec![stats(1, 3), stats(2, 5)], false), V)
                .is_none()
        );
        let flows = rx.try_recv().unwrap().unwrap();
        assert_eq!(flows.len(), 3);
        let sums = counters_by_cookie(&flows);
        assert_eq!(
            sums[&1],
            FlowCounters {
                flows: 2,
                packets: 5,
                bytes: 500
            }
        );
        assert_eq!(sums[&2].packets, 5);
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn an_error_answers_the_request_and_unknown_xids_pass() {
        let mut pending = PendingStats::default();
        let (tx, mut rx) = oneshot::channel();
        pending.register(3, tx);
        let error = ErrorMsg {
            code: ErrorCode::from_name(V, "OFPBRC_BAD_STAT").unwrap(),
            data: vec![],
        };
        assert!(
            pending
                .offer(OfpMessage::new(V, 3, Message::Error(error)), V)
                .is_none()
        );
        assert!(matches!(rx.try_recv().unwrap(), Err(StatsError::Refused(_))));
        // A reply nobody waits for is not ours.
        assert!(pending.offer(reply(3, vec![], false), V).is_some());
    }

    #[test]
    fn abandoned_requests_are_pruned() {
        let mut pending = PendingStats::default();
        let (tx, rx) = oneshot::channel();
        pending.register(9, tx);
        assert!(pending.offer(reply(9, vec![stats(1, 1)], true), V).is_none());
        drop(rx);
        pending.prune();
        assert_eq!(pending.len(), 0);
        assert_eq!(pending.assembler.pending(), 0);
    }
}
