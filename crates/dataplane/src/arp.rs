//! ARP frames the controller sends itself: requests that resolve the public
//! gateway's MAC, and gratuitous ARP announcing where an Elastic IP lives
//! now. Pure byte building and parsing.

use std::net::Ipv4Addr;

use openflow::MacAddr;

const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
/// Ethernet, IPv4, 6-byte and 4-byte addresses.
const ARP_HEADER: [u8; 6] = [0x00, 0x01, 0x08, 0x00, 6, 4];

fn frame(
    dst: MacAddr,
    src: MacAddr,
    op: u16,
    sha: MacAddr,
    spa: Ipv4Addr,
    tha: MacAddr,
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ETHERTYPE_ARP);
    f.extend_from_slice(&ARP_HEADER);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha.0);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha.0);
    f.extend_from_slice(&tpa.octets());
    // Minimum Ethernet payload.
    f.resize(60, 0);
    f
}

/// The MAC a hypervisor's own requests (gateway probes) come from:
/// `02:fd:` and the low 32 bits of its datapath id, unique per hypervisor
/// and outside the ranges of instances (`02:f6:...` by default), the router
/// (`02:fa:`) and Elastic IPs (`02:fb:`).
pub fn hypervisor_mac(datapath_id: u64) -> MacAddr {
    let b = datapath_id.to_be_bytes();
    MacAddr([0x02, 0xfd, b[4], b[5], b[6], b[7]])
}

/// "Who has `target`? Tell `sender_ip` at `sender_mac`", broadcast.
pub fn request(sender_mac: MacAddr, sender_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    frame(
        MacAddr::BROADCAST,
        sender_mac,
        1,
        sender_mac,
        sender_ip,
        MacAddr::ZERO,
        target,
    )
}

/// Gratuitous ARP for `ip` at `mac`, as a request (`op` 1) or a reply
/// (`op` 2): some switches and routers only honour one of the two.
pub fn gratuitous(mac: MacAddr, ip: Ipv4Addr, reply: bool) -> Vec<u8> {
    let (op, tha) = if reply { (2, mac) } else { (1, MacAddr::ZERO) };
    frame(MacAddr::BROADCAST, mac, op, mac, ip, tha, ip)
}

/// An ARP reply's sender: (IP, MAC), if `frame` is one.
pub fn reply_sender(frame: &[u8]) -> Option<(Ipv4Addr, MacAddr)> {
    if frame.len() < 42
        || frame[12..14] != ETHERTYPE_ARP
        || frame[14..20] != ARP_HEADER
        || frame[20..22] != [0, 2]
    {
        return None;
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&frame[22..28]);
    let ip = Ipv4Addr::new(frame[28], frame[29], frame[30], frame[31]);
    Some((ip, MacAddr(mac)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_have_the_wire_layout() {
        let me = MacAddr([2, 0xfb, 198, 51, 100, 10]);
        let f = request(
            me,
            Ipv4Addr::new(198, 51, 100, 10),
            Ipv4Addr::new(198, 51, 100, 1),
        );
        assert_eq!(f.len(), 60);
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[38..42], &[198, 51, 100, 1]);
        assert_eq!(reply_sender(&f), None, "a request is not a reply");
        let garp = gratuitous(me, Ipv4Addr::new(198, 51, 100, 10), true);
        assert_eq!(reply_sender(&garp), Some((Ipv4Addr::new(198, 51, 100, 10), me)));
        let garp = gratuitous(me, Ipv4Addr::new(198, 51, 100, 10), false);
        assert_eq!(
            &garp[28..32],
            &garp[38..42],
            "sender and target address are the same"
        );
        assert_eq!(reply_sender(&[0u8; 10]), None);
    }
}
