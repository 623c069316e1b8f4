//! One captured frame to a small [`PacketSummary`]: etherparse's lax slicing, so a frame
//! cut by the snaplen or by a broken sender still yields the layers that are there.
//! Nothing here panics on any bytes (the fuzz target and a seeded random-bytes test
//! hold it to that).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::err::packet::SliceError;
use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket};

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

impl PacketSummary {
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
    if let Some((err, _layer)) = &sliced.stop_err {
        match err {
            SliceError::Len(_) => summary.truncated = true,
            _ => summary.parse_error = true,
        }
    }
    let payload = match &sliced.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            summary.src = IpAddr::V4(h.source_addr());
            summary.dst = IpAddr::V4(h.destination_addr());
            ip.payload()
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            summary.src = IpAddr::V6(Ipv6Addr::from(h.source()));
            summary.dst = IpAddr::V6(Ipv6Addr::from(h.destination()));
            ip.payload()
        }
        Some(LaxNetSlice::Arp(_)) | None => {
            // An IP ethertype with no decodable IP header is a parse error, not "non-IP".
            if let Some(ether) = sliced.ether_payload() {
                if ether.ether_type == EtherType::IPV4 || ether.ether_type == EtherType::IPV6 {
                    summary.parse_error = true;
                }
            }
            return summary;
        }
    };
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
        return summary;
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
    summary
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
