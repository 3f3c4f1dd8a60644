//! Port descriptions (`ofp_port`), `OFPT_PORT_STATUS`, and port statistics,
//! in their OpenFlow 1.3 layouts.

use crate::types::{MacAddr, PortNo};
use crate::wire::{DecodeError, EncodeError, Put, Reader, put_fixed_str, read_fixed_str};

/// Size of a port name field, including its terminating NUL.
pub const OFP_MAX_PORT_NAME_LEN: usize = 16;

/// Port configuration bits (`OFPPC_*`).
pub mod port_config {
    /// Administratively down.
    pub const PORT_DOWN: u32 = 1 << 0;
    /// Drop all packets received.
    pub const NO_RECV: u32 = 1 << 2;
    /// Drop packets forwarded to the port.
    pub const NO_FWD: u32 = 1 << 5;
    /// Do not send packet-ins for the port.
    pub const NO_PACKET_IN: u32 = 1 << 6;
}

/// Port state bits (`OFPPS_*`).
pub mod port_state {
    /// No physical link.
    pub const LINK_DOWN: u32 = 1 << 0;
    /// Port is blocked (e.g. by spanning tree).
    pub const BLOCKED: u32 = 1 << 1;
    /// Live for fast failover.
    pub const LIVE: u32 = 1 << 2;
}

/// A port description (`ofp_port`, 64 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Port {
    /// OpenFlow port number.
    pub port_no: PortNo,
    /// Ethernet address.
    pub hw_addr: MacAddr,
    /// Interface name (at most 16 bytes; bytes that are not UTF-8 read as `?`).
    pub name: String,
    /// [`port_config`] bits.
    pub config: u32,
    /// [`port_state`] bits.
    pub state: u32,
    /// Current features (`OFPPF_*`).
    pub curr: u32,
    /// Advertised features.
    pub advertised: u32,
    /// Supported features.
    pub supported: u32,
    /// Features advertised by the peer.
    pub peer: u32,
    /// Current bit rate in kbps.
    pub curr_speed: u32,
    /// Maximum bit rate in kbps.
    pub max_speed: u32,
}

impl Port {
    /// Whether the port is administratively and physically up.
    pub fn is_up(&self) -> bool {
        self.config & port_config::PORT_DOWN == 0 && self.state & port_state::LINK_DOWN == 0
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.put_u32(self.port_no.0);
        out.put_zeros(4);
        out.extend_from_slice(&self.hw_addr.0);
        out.put_zeros(2);
        put_fixed_str(out, &self.name, OFP_MAX_PORT_NAME_LEN, "port name")?;
        for v in [
            self.config,
            self.state,
            self.curr,
            self.advertised,
            self.supported,
            self.peer,
            self.curr_speed,
            self.max_speed,
        ] {
            out.put_u32(v);
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let port_no = PortNo(r.u32("port port_no")?);
        r.skip(4, "port padding")?;
        let hw_addr = MacAddr(r.array("port hw_addr")?);
        r.skip(2, "port padding")?;
        Ok(Port {
            port_no,
            hw_addr,
            name: read_fixed_str(r, OFP_MAX_PORT_NAME_LEN, "port name")?,
            config: r.u32("port config")?,
            state: r.u32("port state")?,
            curr: r.u32("port curr")?,
            advertised: r.u32("port advertised")?,
            supported: r.u32("port supported")?,
            peer: r.u32("port peer")?,
            curr_speed: r.u32("port curr_speed")?,
            max_speed: r.u32("port max_speed")?,
        })
    }
}

/// Why a port status message was sent (`ofp_port_reason`).
pub mod port_reason {
    /// The port was added.
    pub const ADD: u8 = 0;
    /// The port was removed.
    pub const DELETE: u8 = 1;
    /// Some attribute of the port changed.
    pub const MODIFY: u8 = 2;
}

/// `OFPT_PORT_STATUS`: a port was added, removed or changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortStatus {
    /// [`port_reason`].
    pub reason: u8,
    /// The port as it is now.
    pub desc: Port,
}

impl PortStatus {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.put_u8(self.reason);
        out.put_zeros(7);
        self.desc.encode(out)
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let reason = r.u8("port_status reason")?;
        r.skip(7, "port_status padding")?;
        Ok(PortStatus {
            reason,
            desc: Port::decode(r)?,
        })
    }
}

/// Counters of one port (`ofp_port_stats`, 112 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PortStats {
    /// Port number.
    pub port_no: PortNo,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets dropped on receive.
    pub rx_dropped: u64,
    /// Packets dropped on send.
    pub tx_dropped: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Send errors.
    pub tx_errors: u64,
    /// Frame alignment errors.
    pub rx_frame_err: u64,
    /// Receive overruns.
    pub rx_over_err: u64,
    /// CRC errors.
    pub rx_crc_err: u64,
    /// Collisions.
    pub collisions: u64,
    /// Seconds the port has been alive.
    pub duration_sec: u32,
    /// Nanoseconds beyond `duration_sec`.
    pub duration_nsec: u32,
}

impl PortStats {
    fn counters(&self) -> [u64; 12] {
        [
            self.rx_packets,
            self.tx_packets,
            self.rx_bytes,
            self.tx_bytes,
            self.rx_dropped,
            self.tx_dropped,
            self.rx_errors,
            self.tx_errors,
            self.rx_frame_err,
            self.rx_over_err,
            self.rx_crc_err,
            self.collisions,
        ]
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.port_no.0);
        out.put_zeros(4);
        for c in self.counters() {
            out.put_u64(c);
        }
        out.put_u32(self.duration_sec);
        out.put_u32(self.duration_nsec);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let port_no = PortNo(r.u32("port stats port_no")?);
        r.skip(4, "port stats padding")?;
        let mut c = [0u64; 12];
        for v in &mut c {
            *v = r.u64("port stats counter")?;
        }
        Ok(PortStats {
            port_no,
            rx_packets: c[0],
            tx_packets: c[1],
            rx_bytes: c[2],
            tx_bytes: c[3],
            rx_dropped: c[4],
            tx_dropped: c[5],
            rx_errors: c[6],
            tx_errors: c[7],
            rx_frame_err: c[8],
            rx_over_err: c[9],
            rx_crc_err: c[10],
            collisions: c[11],
            duration_sec: r.u32("port stats duration_sec")?,
            duration_nsec: r.u32("port stats duration_nsec")?,
        })
    }
}
