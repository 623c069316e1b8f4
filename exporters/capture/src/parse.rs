//! One captured frame to a small [`PacketSummary`]: etherparse's lax slicing, so a frame
//! cut by the snaplen or by a broken sender still yields the layers that are there.
//! Nothing here panics on any bytes (the fuzz target and a seeded random-bytes test
//! hold it to that).
//!
//! Most frames take a short path: etherparse's link and IP slices, then the few checks
//! that decide whether slicing the transport header could fail. Whenever it could (or
//! the frame is anything but Ethernet / cooked / raw, up to two VLAN tags, IPv4 or IPv6
//! with clean extension headers), the frame goes through [`LaxSlicedPacket`] instead.
//! Both give the same summary; a test holds them to that on every prefix and on seeded
//! mutations of many frames.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::err::packet::SliceError;
use etherparse::{
    icmpv6, EtherType, Ethernet2Slice, IpNumber, LaxIpPayloadSlice, LaxIpSlice, LaxNetSlice,
    LaxSlicedPacket, SingleVlanSlice,
};

/// The datalinks vigia-capture reads (libpcap `DLT_*` / `LINKTYPE_*` numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datalink {
    Ethernet,
    /// Linux cooked capture v1 (`lo` and `any` on older libpcap).
    LinuxSll,
    /// Linux cooked capture v2 (`any` on libpcap 1.10+).
    LinuxSll2,
    /// Raw IP, version from the first nibble.
    RawIp,
    Ipv4,
    Ipv6,
    /// BSD loopback: a 4-byte address family in host order.
    Null,
}

impl Datalink {
    pub fn from_linktype(linktype: i32) -> Option<Datalink> {
        Some(match linktype {
            1 => Datalink::Ethernet,
            113 => Datalink::LinuxSll,
            276 => Datalink::LinuxSll2,
            // 12 and 14 are the historical raw-IP DLT numbers some systems write.
            101 | 12 | 14 => Datalink::RawIp,
            228 => Datalink::Ipv4,
            229 => Datalink::Ipv6,
            0 | 108 => Datalink::Null,
            _ => return None,
        })
    }
}

/// The protocol classes every per-protocol metric uses: a fixed, small label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Protocol {
    Tcp = 0,
    Udp = 1,
    Icmp = 2,
    Icmpv6 = 3,
    OtherIp = 4,
    NonIp = 5,
}

impl Protocol {
    pub const ALL: [Protocol; 6] = [
        Protocol::Tcp,
        Protocol::Udp,
        Protocol::Icmp,
        Protocol::Icmpv6,
        Protocol::OtherIp,
        Protocol::NonIp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Icmpv6 => "icmpv6",
            Protocol::OtherIp => "other_ip",
            Protocol::NonIp => "non_ip",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether flows of this protocol are keyed by ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp)
    }
}

/// `ts_ns` of a packet whose capture time cannot be represented (before 1970 or after
/// 2554): the analyser counts it and files the packet at the time of the one before.
pub const BAD_TIMESTAMP: u64 = u64::MAX;

pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// What the analysis needs of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketSummary {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Length on the wire (not the captured length).
    pub wire_len: u32,
    pub protocol: Protocol,
    /// Unspecified (`0.0.0.0`) for non-IP packets.
    pub src: IpAddr,
    pub dst: IpAddr,
    /// 0 when the protocol has no ports, the header was cut off, or the packet is a
    /// fragment.
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags byte, 0 for other protocols.
    pub tcp_flags: u8,
    /// Some layer was cut short (snaplen or a short frame); the packet still counts.
    pub truncated: bool,
    /// A header that should be there could not be decoded at all.
    pub parse_error: bool,
}

/// The IP family of a packet, for the `family` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Family {
    Ipv4 = 0,
    Ipv6 = 1,
    /// Not IP (ARP, LLDP...).
    None = 2,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::Ipv4, Family::Ipv6, Family::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
            Family::None => "none",
        }
    }
}

impl PacketSummary {
    pub fn family(&self) -> Family {
        match (self.protocol, self.src) {
            (Protocol::NonIp, _) => Family::None,
            (_, IpAddr::V4(_)) => Family::Ipv4,
            (_, IpAddr::V6(_)) => Family::Ipv6,
        }
    }

    fn non_ip(ts_ns: u64, wire_len: u32) -> Self {
        Self {
            ts_ns,
            wire_len,
            protocol: Protocol::NonIp,
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            src_port: 0,
            dst_port: 0,
            tcp_flags: 0,
            truncated: false,
            parse_error: false,
        }
    }
}

/// Summarises one frame. `data` is what was captured, `wire_len` the original length.
pub fn summarize(datalink: Datalink, data: &[u8], wire_len: u32, ts_ns: u64) -> PacketSummary {
    let mut summary = PacketSummary::non_ip(ts_ns, wire_len);
    if (data.len() as u64) < u64::from(wire_len) {
        summary.truncated = true;
    }
    if let Some(ip) = ip_bytes(datalink, data) {
        if summarize_clean_ip(ip, &mut summary) {
            return summary;
        }
    }
    summarize_lax(datalink, data, summary)
}

/// The bytes after the link header (and up to two VLAN tags) when they are announced as
/// IPv4 or IPv6; `None` for everything [`summarize_lax`] has to look at.
fn ip_bytes(datalink: Datalink, data: &[u8]) -> Option<&[u8]> {
    let (mut ether_type, mut payload) = match datalink {
        Datalink::Ethernet => {
            let eth = Ethernet2Slice::from_slice_without_fcs(data).ok()?;
            (eth.ether_type(), eth.payload_slice())
        }
        Datalink::LinuxSll => (
            EtherType(u16::from_be_bytes([*data.get(14)?, *data.get(15)?])),
            data.get(16..)?,
        ),
        Datalink::LinuxSll2 => (
            EtherType(u16::from_be_bytes([*data.first()?, *data.get(1)?])),
            data.get(20..)?,
        ),
        Datalink::RawIp | Datalink::Ipv4 | Datalink::Ipv6 => return Some(data),
        // The general path does not look at the address family either: IP or nothing.
        Datalink::Null => return data.get(4..),
    };
    for _ in 0..3 {
        match ether_type {
            EtherType::IPV4 | EtherType::IPV6 => return Some(payload),
            MPLS_UNICAST | MPLS_MULTICAST | PPPOE_SESSION => {
                return match tunnelled_ip(ether_type, payload) {
                    Tunnelled::Ip(ip) => Some(ip),
                    _ => None,
                };
            }
            EtherType::VLAN_TAGGED_FRAME
            | EtherType::PROVIDER_BRIDGING
            | EtherType::VLAN_DOUBLE_TAGGED_FRAME => {
                let vlan = SingleVlanSlice::from_slice(payload).ok()?;
                ether_type = vlan.ether_type();
                payload = vlan.payload_slice();
            }
            _ => return None,
        }
    }
    None
}

/// Fills `summary` from IP bytes that etherparse slices with no stop error and whose
/// transport header [`LaxSlicedPacket`] would slice without one. Returns `false`, with
/// `summary` untouched, for anything else.
fn summarize_clean_ip(bytes: &[u8], summary: &mut PacketSummary) -> bool {
    let Ok((ip, None)) = LaxIpSlice::from_slice(bytes) else {
        return false;
    };
    let payload = ip.payload();
    if !payload.fragmented && !transport_slices_cleanly(payload.ip_number, payload.payload) {
        return false;
    }
    match &ip {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            summary.src = IpAddr::V4(h.source_addr());
            summary.dst = IpAddr::V4(h.destination_addr());
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            summary.src = IpAddr::V6(Ipv6Addr::from(h.source()));
            summary.dst = IpAddr::V6(Ipv6Addr::from(h.destination()));
        }
    }
    add_transport(summary, payload);
    true
}

/// Whether etherparse's transport slicing (as [`LaxSlicedPacket`] runs it) succeeds on
/// `bytes`: the same length and content checks, for the protocols it slices.
fn transport_slices_cleanly(ip_number: IpNumber, bytes: &[u8]) -> bool {
    match ip_number {
        IpNumber::TCP => {
            // Data offset in 32-bit words: at least 5, and the whole header captured.
            let header_len = bytes.get(12).map_or(0, |b| usize::from(b >> 4) * 4);
            bytes.len() >= 20 && header_len >= 20 && bytes.len() >= header_len
        }
        IpNumber::UDP => bytes.len() >= 8,
        // Timestamp (13) and timestamp reply (14) have a length of their own.
        IpNumber::ICMP => bytes.len() >= 8 && !matches!(bytes[0], 13 | 14),
        IpNumber::IPV6_ICMP => bytes.len() >= 8 && bytes.len() <= icmpv6::MAX_ICMPV6_BYTE_LEN,
        // IGMP's minimum length depends on its type: left to the general path.
        IpNumber::IGMP => false,
        _ => true,
    }
}

/// The general path: etherparse's [`LaxSlicedPacket`], every layer and every error.
fn summarize_lax(datalink: Datalink, data: &[u8], mut summary: PacketSummary) -> PacketSummary {
    let sliced = match datalink {
        Datalink::Ethernet => match LaxSlicedPacket::from_ethernet(data) {
            Ok(p) => p,
            Err(_) => {
                summary.parse_error = true;
                summary.truncated = true;
                return summary;
            }
        },
        Datalink::LinuxSll | Datalink::LinuxSll2 => {
            let (header_len, proto_at) = if datalink == Datalink::LinuxSll {
                (16, 14)
            } else {
                (20, 0)
            };
            if data.len() < header_len {
                summary.parse_error = true;
                summary.truncated = true;
                return summary;
            }
            let proto = u16::from_be_bytes([data[proto_at], data[proto_at + 1]]);
            // Values below 0x0600 are not ethertypes (802.2 frames, CAN, netlink...).
            if proto < 0x0600 {
                return summary;
            }
            LaxSlicedPacket::from_ether_type(EtherType(proto), &data[header_len..])
        }
        Datalink::RawIp | Datalink::Ipv4 | Datalink::Ipv6 => match LaxSlicedPacket::from_ip(data) {
            Ok(p) => p,
            Err(_) => {
                summary.parse_error = true;
                return summary;
            }
        },
        Datalink::Null => {
            if data.len() < 4 {
                summary.parse_error = true;
                summary.truncated = true;
                return summary;
            }
            match LaxSlicedPacket::from_ip(&data[4..]) {
                Ok(p) => p,
                Err(_) => {
                    // Not IP (the family says something else) or a broken IP header.
                    summary.parse_error = matches!(data.get(4).map(|b| b >> 4), Some(4 | 6));
                    return summary;
                }
            }
        }
    };
    let Some(payload) = ip_layer(&sliced, &mut summary) else {
        if let Some(ether) = sliced.ether_payload() {
            match ether.ether_type {
                // An IP ethertype with no decodable IP header is a parse error, not
                // "non-IP".
                EtherType::IPV4 | EtherType::IPV6 => summary.parse_error = true,
                // etherparse stops at MPLS and PPPoE: the IP inside is ours to find.
                MPLS_UNICAST | MPLS_MULTICAST | PPPOE_SESSION => {
                    return summarize_tunnelled(ether.ether_type, ether.payload, summary)
                }
                _ => {}
            }
        }
        return summary;
    };
    add_transport(&mut summary, payload);
    summary
}

/// Marks how slicing stopped (cut short, or a broken header) and, for an IP layer, reads
/// its addresses and returns its payload; `None` when the layer is not IP.
fn ip_layer<'a>(
    sliced: &'a LaxSlicedPacket<'_>,
    summary: &mut PacketSummary,
) -> Option<&'a LaxIpPayloadSlice<'a>> {
    if let Some((err, _layer)) = &sliced.stop_err {
        match err {
            SliceError::Len(_) => summary.truncated = true,
            _ => summary.parse_error = true,
        }
    }
    match &sliced.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            summary.src = IpAddr::V4(h.source_addr());
            summary.dst = IpAddr::V4(h.destination_addr());
            Some(ip.payload())
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            summary.src = IpAddr::V6(Ipv6Addr::from(h.source()));
            summary.dst = IpAddr::V6(Ipv6Addr::from(h.destination()));
            Some(ip.payload())
        }
        Some(LaxNetSlice::Arp(_)) | None => None,
    }
}

/// MPLS (RFC 3032) and PPPoE session (RFC 2516) ethertypes: ISP links carry IP in them.
pub const MPLS_UNICAST: EtherType = EtherType(0x8847);
pub const MPLS_MULTICAST: EtherType = EtherType(0x8848);
pub const PPPOE_SESSION: EtherType = EtherType(0x8864);

/// Most MPLS labels walked before the stack counts as malformed.
const MAX_MPLS_LABELS: usize = 16;

/// What an MPLS or PPPoE session header carries.
#[derive(Debug, PartialEq, Eq)]
enum Tunnelled<'a> {
    /// IPv4 or IPv6 bytes.
    Ip(&'a [u8]),
    /// Something else (a pseudowire, PPP control traffic): not IP.
    Other,
    /// The headers are cut short or malformed.
    Broken,
}

/// The IP packet inside an MPLS label stack or a PPPoE session frame. MPLS does not say
/// what it carries: after the bottom-of-stack label the first nibble does (4 or 6), as
/// tshark and tcpdump guess it; anything else (a pseudowire control word) is not IP.
/// PPPoE says it in its PPP protocol field (0x0021 IPv4, 0x0057 IPv6).
fn tunnelled_ip(ether_type: EtherType, payload: &[u8]) -> Tunnelled<'_> {
    match ether_type {
        MPLS_UNICAST | MPLS_MULTICAST => {
            let mut at = 0;
            for _ in 0..MAX_MPLS_LABELS {
                let Some(label) = payload.get(at..at + 4) else {
                    return Tunnelled::Broken;
                };
                at += 4;
                if label[2] & 0x01 != 0 {
                    let inner = &payload[at..];
                    return match inner.first().map(|b| b >> 4) {
                        Some(4 | 6) => Tunnelled::Ip(inner),
                        Some(_) => Tunnelled::Other,
                        None => Tunnelled::Broken,
                    };
                }
            }
            Tunnelled::Broken
        }
        PPPOE_SESSION => {
            // Version and type (0x11), code 0 (session data), session id, length, then
            // the PPP protocol.
            let Some(header) = payload.get(..8) else {
                return Tunnelled::Broken;
            };
            if header[0] != 0x11 || header[1] != 0 {
                return Tunnelled::Broken;
            }
            match u16::from_be_bytes([header[6], header[7]]) {
                0x0021 | 0x0057 => Tunnelled::Ip(&payload[8..]),
                _ => Tunnelled::Other,
            }
        }
        _ => Tunnelled::Other,
    }
}

/// The general path for an MPLS or PPPoE payload: the IP inside, through
/// [`LaxSlicedPacket::from_ip`] as any other IP packet.
fn summarize_tunnelled(
    ether_type: EtherType,
    payload: &[u8],
    mut summary: PacketSummary,
) -> PacketSummary {
    let ip = match tunnelled_ip(ether_type, payload) {
        Tunnelled::Ip(ip) => ip,
        Tunnelled::Other => return summary,
        Tunnelled::Broken => {
            summary.truncated = true;
            summary.parse_error = true;
            return summary;
        }
    };
    let sliced = match LaxSlicedPacket::from_ip(ip) {
        Ok(p) => p,
        Err(_) => {
            summary.parse_error = true;
            return summary;
        }
    };
    let Some(payload) = ip_layer(&sliced, &mut summary) else {
        summary.parse_error = true;
        return summary;
    };
    add_transport(&mut summary, payload);
    summary
}

/// Protocol, ports and TCP flags from the IP payload.
fn add_transport(summary: &mut PacketSummary, payload: &LaxIpPayloadSlice<'_>) {
    if payload.incomplete {
        summary.truncated = true;
    }
    let bytes = payload.payload;
    summary.protocol = match payload.ip_number.0 {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        1 => Protocol::Icmp,
        58 => Protocol::Icmpv6,
        _ => Protocol::OtherIp,
    };
    // Fragments after the first carry no transport header; the first one is rare enough
    // that its ports are left out too rather than telling the two apart per family.
    if payload.fragmented {
        return;
    }
    match summary.protocol {
        Protocol::Tcp => {
            if bytes.len() >= 4 {
                summary.src_port = u16::from_be_bytes([bytes[0], bytes[1]]);
                summary.dst_port = u16::from_be_bytes([bytes[2], bytes[3]]);
            }
            if bytes.len() >= 14 {
                summary.tcp_flags = bytes[13];
            }
            if bytes.len() < 20 {
                summary.truncated = true;
            }
        }
        Protocol::Udp => {
            if bytes.len() >= 4 {
                summary.src_port = u16::from_be_bytes([bytes[0], bytes[1]]);
                summary.dst_port = u16::from_be_bytes([bytes[2], bytes[3]]);
            }
            if bytes.len() < 8 {
                summary.truncated = true;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_syn() -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .tcp(40000, 443, 1, 64240)
            .syn();
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    }

    #[test]
    fn ethernet_tcp_syn() {
        let frame = tcp_syn();
        let s = summarize(Datalink::Ethernet, &frame, frame.len() as u32, 7);
        assert_eq!(s.protocol, Protocol::Tcp);
        assert_eq!(s.src, IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!((s.src_port, s.dst_port), (40000, 443));
        assert_eq!(s.tcp_flags & (TCP_SYN | TCP_ACK), TCP_SYN);
        assert!(!s.truncated && !s.parse_error);
    }

    #[test]
    fn every_prefix_of_a_frame_is_summarised_without_panic() {
        let frame = tcp_syn();
        for cut in 0..frame.len() {
            let s = summarize(Datalink::Ethernet, &frame[..cut], frame.len() as u32, 0);
            assert!(s.truncated, "cut at {cut}");
            if cut >= 14 + 20 + 4 {
                assert_eq!(s.protocol, Protocol::Tcp);
                assert_eq!(s.dst_port, 443, "cut at {cut}");
            }
        }
    }

    /// What the general path alone makes of a frame.
    fn lax_only(datalink: Datalink, data: &[u8], wire_len: u32) -> PacketSummary {
        let mut summary = PacketSummary::non_ip(0, wire_len);
        if (data.len() as u64) < u64::from(wire_len) {
            summary.truncated = true;
        }
        summarize_lax(datalink, data, summary)
    }

    fn eth(b: etherparse::PacketBuilderStep<etherparse::TcpHeader>, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    /// Ethernet frames of every shape the short path takes or hands on.
    fn base_frames() -> Vec<Vec<u8>> {
        use etherparse::{TcpOptionElement, VlanId};
        let (a4, b4) = ([198, 18, 0, 1], [198, 19, 0, 2]);
        let (a6, b6) = (
            [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        );
        let mut frames = vec![
            tcp_syn(),
            eth(
                PacketBuilder::ethernet2([1; 6], [2; 6])
                    .ipv4(a4, b4, 64)
                    .tcp(40000, 443, 1, 64240)
                    .syn()
                    .options(&[TcpOptionElement::MaximumSegmentSize(1460)])
                    .unwrap(),
                &[7; 40],
            ),
            eth(
                PacketBuilder::ethernet2([1; 6], [2; 6])
                    .ipv6(a6, b6, 64)
                    .tcp(40000, 443, 1, 64240)
                    .ack(9),
                &[7; 20],
            ),
            eth(
                PacketBuilder::ethernet2([1; 6], [2; 6])
                    .single_vlan(VlanId::try_new(7).unwrap())
                    .ipv4(a4, b4, 64)
                    .tcp(1, 2, 3, 4)
                    .rst(),
                &[],
            ),
        ];
        let mut push = |b: etherparse::PacketBuilderStep<etherparse::UdpHeader>, payload: &[u8]| {
            let mut out = Vec::new();
            b.write(&mut out, payload).unwrap();
            frames.push(out);
        };
        push(
            PacketBuilder::ethernet2([1; 6], [2; 6])
                .ipv4(a4, b4, 64)
                .udp(53, 5353),
            &[1; 30],
        );
        push(
            PacketBuilder::ethernet2([1; 6], [2; 6])
                .ipv6(a6, b6, 64)
                .udp(53, 5353),
            &[1; 30],
        );
        push(
            PacketBuilder::ethernet2([1; 6], [2; 6])
                .double_vlan(VlanId::try_new(5).unwrap(), VlanId::try_new(6).unwrap())
                .ipv6(a6, b6, 64)
                .udp(1, 2),
            &[1; 12],
        );
        let mut out = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(a4, b4, 64)
            .icmpv4_echo_request(1, 2)
            .write(&mut out, &[0; 16])
            .unwrap();
        frames.push(out);
        let mut out = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv6(a6, b6, 64)
            .icmpv6_echo_reply(1, 2)
            .write(&mut out, &[0; 16])
            .unwrap();
        frames.push(out);
        // Hand-made IPv4: with options, a fragment, ICMP timestamp, IGMP, GRE.
        let ipv4 = |ihl_words: u8, flags_frag: u16, proto: u8, payload: &[u8]| {
            let header_len = usize::from(ihl_words) * 4;
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
            let total = (header_len + payload.len()) as u16;
            f.extend_from_slice(&[0x40 | ihl_words, 0]);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0, 1]);
            f.extend_from_slice(&flags_frag.to_be_bytes());
            f.extend_from_slice(&[64, proto, 0, 0]);
            f.extend_from_slice(&a4);
            f.extend_from_slice(&b4);
            f.resize(14 + header_len, 1); // options: NOPs
            f.extend_from_slice(payload);
            f
        };
        let mut tcp_header = vec![0u8; 20];
        tcp_header[12] = 0x50;
        tcp_header[13] = 0x12;
        frames.push(ipv4(6, 0, 6, &tcp_header));
        frames.push(ipv4(5, 0x2000, 17, &[0, 53, 0, 53, 0, 8, 0, 0]));
        frames.push(ipv4(5, 0x0010, 6, &tcp_header));
        let mut timestamp = vec![13, 0, 0, 0, 0, 1, 0, 1];
        timestamp.extend_from_slice(&[0; 12]);
        frames.push(ipv4(5, 0, 1, &timestamp));
        frames.push(ipv4(5, 0, 2, &[0x11, 0, 0, 0, 0, 0, 0, 0]));
        frames.push(ipv4(5, 0, 47, &[0, 0, 0x08, 0x00]));
        // IPv6 with a hop-by-hop header before UDP.
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, 16, 0, 64]);
        f.extend_from_slice(&a6);
        f.extend_from_slice(&b6);
        f.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        f.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
        frames.push(f);
        // ARP and an unknown ethertype.
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&[0; 20]);
        frames.push(arp);
        frames.push(vec![
            2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xcc, 1, 2, 3, 4,
        ]);
        frames
    }

    /// The same frame on every datalink the exporter reads.
    fn on_every_datalink(frame: &[u8]) -> Vec<(Datalink, Vec<u8>)> {
        let ethertype = [frame[12], frame[13]];
        let rest = &frame[14..];
        let mut sll1 = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
        sll1.extend_from_slice(&ethertype);
        sll1.extend_from_slice(rest);
        let mut sll2 = ethertype.to_vec();
        sll2.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
        sll2.extend_from_slice(rest);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(rest);
        vec![
            (Datalink::Ethernet, frame.to_vec()),
            (Datalink::LinuxSll, sll1),
            (Datalink::LinuxSll2, sll2),
            (Datalink::RawIp, rest.to_vec()),
            (Datalink::Null, null),
        ]
    }

    #[test]
    fn the_short_path_gives_what_the_general_slicer_gives() {
        let mut rng = vigia_anomaly::SplitMix64::new(0xfa57);
        let mut short = 0u32;
        for frame in base_frames() {
            for (link, data) in on_every_datalink(&frame) {
                let wire = data.len() as u32;
                for cut in 0..=data.len() {
                    let got = summarize(link, &data[..cut], wire, 0);
                    assert_eq!(
                        got,
                        lax_only(link, &data[..cut], wire),
                        "{link:?} {data:02x?} cut at {cut}"
                    );
                    let mut scratch = PacketSummary::non_ip(0, wire);
                    short += u32::from(
                        ip_bytes(link, &data[..cut])
                            .is_some_and(|ip| summarize_clean_ip(ip, &mut scratch)),
                    );
                }
                for _ in 0..3_000 {
                    let mut m = data.clone();
                    for _ in 0..1 + rng.next_u64() % 3 {
                        let at = (rng.next_u64() as usize) % m.len().min(80);
                        m[at] ^= 1 << (rng.next_u64() % 8);
                    }
                    if rng.next_u64() % 4 == 0 {
                        m.truncate((rng.next_u64() as usize) % (m.len() + 1));
                    }
                    let got = summarize(link, &m, wire, 0);
                    assert_eq!(got, lax_only(link, &m, wire), "{link:?} {m:02x?}");
                }
            }
        }
        // The short path was taken, not only the general one.
        assert!(short > 1000, "{short}");
    }

    #[test]
    fn seeded_random_bytes_never_panic_in_parser_or_features() {
        let mut rng = vigia_anomaly::SplitMix64::new(0x5eed);
        let links = [
            Datalink::Ethernet,
            Datalink::LinuxSll,
            Datalink::LinuxSll2,
            Datalink::RawIp,
            Datalink::Null,
        ];
        let base = tcp_syn();
        let mut window = crate::window::Window::new(64);
        for i in 0..200_000u32 {
            let len = (rng.next_u64() % 96) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            // Half the inputs start from a valid frame with a few bytes flipped, so the
            // deeper layers are reached too.
            if i % 2 == 0 {
                buf = base.clone();
                for _ in 0..3 {
                    let at = (rng.next_u64() as usize) % buf.len();
                    buf[at] = rng.next_u64() as u8;
                }
                buf.truncate((rng.next_u64() as usize) % (buf.len() + 1));
            }
            let link = links[(i as usize) % links.len()];
            let p = summarize(link, &buf, rng.next_u64() as u32, u64::from(i));
            window.add(&p);
            if i % 1000 == 999 {
                let stats = window.close(0, 1, 5);
                assert!(stats.vector().iter().all(|v| v.is_finite()), "{stats:?}");
            }
        }
    }
}
