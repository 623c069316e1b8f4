//! What both data sources fill in: TCP socket counts per state, host-wide and per
//! configured port and side.
//!
//! Counting is the hot path (one call per socket, 100,000 sockets and more on a busy
//! host), so it touches only fixed arrays: a 65,536-entry table maps a port number to
//! its slot among the configured ports, and each slot holds one counter per side and
//! state. No hashing, no allocation per socket.

use std::sync::Arc;

/// The TCP states the kernel reports, in the order of the kernel's numbering
/// (`TCP_ESTABLISHED` = 1 ... `TCP_CLOSING` = 11). `NEW_SYN_RECV` (12, a pending request
/// socket) is counted as `SynRecv`, as `ss` and `/proc/net/tcp` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
}

impl TcpState {
    pub const ALL: [TcpState; 11] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
    ];

    /// The state for the kernel's state number, or `None` for a number this exporter does
    /// not know (a newer kernel's state): such sockets are skipped, not misfiled.
    pub fn from_kernel(state: u8) -> Option<TcpState> {
        match state {
            1..=11 => Some(Self::ALL[usize::from(state) - 1]),
            12 => Some(TcpState::SynRecv),
            _ => None,
        }
    }

    /// The `state` label value.
    pub fn label(self) -> &'static str {
        match self {
            TcpState::Established => "established",
            TcpState::SynSent => "syn_sent",
            TcpState::SynRecv => "syn_recv",
            TcpState::FinWait1 => "fin_wait1",
            TcpState::FinWait2 => "fin_wait2",
            TcpState::TimeWait => "time_wait",
            TcpState::Close => "close",
            TcpState::CloseWait => "close_wait",
            TcpState::LastAck => "last_ack",
            TcpState::Listen => "listen",
            TcpState::Closing => "closing",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

pub const STATES: usize = TcpState::ALL.len();

/// Which end of a socket carries the configured port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The socket's local port is the configured port: listeners and the connections
    /// they accepted.
    Local,
    /// The socket's remote port is the configured port: outgoing connections to it.
    Remote,
}

impl Side {
    pub const ALL: [Side; 2] = [Side::Local, Side::Remote];

    pub fn label(self) -> &'static str {
        match self {
            Side::Local => "local",
            Side::Remote => "remote",
        }
    }
}

/// Maps a port number to its slot among the configured ports. Built once at startup
/// and shared by every scrape.
#[derive(Debug)]
pub struct PortSlots {
    ports: Vec<u16>,
    /// `slot + 1` for a configured port, 0 for any other (port 0 included, so a
    /// listener's zero remote port never matches).
    slot_of: Box<[u16]>,
}

impl PortSlots {
    /// `ports` must be distinct and non-zero (the config guarantees it).
    pub fn new(ports: &[u16]) -> Arc<PortSlots> {
        let mut slot_of = vec![0u16; 1 << 16].into_boxed_slice();
        for (slot, &port) in ports.iter().enumerate() {
            debug_assert!(port != 0 && slot_of[usize::from(port)] == 0);
            // At most 65,535 distinct non-zero ports, so slot + 1 fits in a u16.
            slot_of[usize::from(port)] = (slot + 1) as u16;
        }
        Arc::new(PortSlots {
            ports: ports.to_vec(),
            slot_of,
        })
    }

    pub fn ports(&self) -> &[u16] {
        &self.ports
    }
}

/// Socket counts from one read of the kernel's socket table.
#[derive(Debug, Clone)]
pub struct ConnectionCounts {
    slots: Arc<PortSlots>,
    /// Indexed `[slot][side][state]`.
    per_port: Vec<[[u32; STATES]; 2]>,
    host: [u32; STATES],
}

impl ConnectionCounts {
    pub fn new(slots: Arc<PortSlots>) -> Self {
        let per_port = vec![[[0; STATES]; 2]; slots.ports.len()];
        Self {
            slots,
            per_port,
            host: [0; STATES],
        }
    }

    /// Sets every count back to zero, keeping the allocation for the next read.
    pub fn clear(&mut self) {
        self.host = [0; STATES];
        for entry in &mut self.per_port {
            *entry = [[0; STATES]; 2];
        }
    }

    /// Counts one socket; `state` is the kernel's state number, ports in host order.
    #[inline]
    pub fn add(&mut self, state: u8, local_port: u16, remote_port: u16) {
        let Some(state) = TcpState::from_kernel(state) else {
            return;
        };
        let s = state.index();
        self.host[s] += 1;
        let local = self.slots.slot_of[usize::from(local_port)];
        if local != 0 {
            self.per_port[usize::from(local - 1)][0][s] += 1;
        }
        let remote = self.slots.slot_of[usize::from(remote_port)];
        if remote != 0 {
            self.per_port[usize::from(remote - 1)][1][s] += 1;
        }
    }

    pub fn ports(&self) -> &[u16] {
        self.slots.ports()
    }

    /// Sockets on the configured port at `slot` (the index in [`Self::ports`]).
    pub fn port(&self, slot: usize, side: Side, state: TcpState) -> u32 {
        let side = match side {
            Side::Local => 0,
            Side::Remote => 1,
        };
        self.per_port[slot][side][state.index()]
    }

    /// All TCP sockets of the host in `state`.
    pub fn host(&self, state: TcpState) -> u32 {
        self.host[state.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_state_numbers_map_to_labels() {
        assert_eq!(TcpState::from_kernel(1), Some(TcpState::Established));
        assert_eq!(TcpState::from_kernel(6), Some(TcpState::TimeWait));
        assert_eq!(TcpState::from_kernel(8), Some(TcpState::CloseWait));
        assert_eq!(TcpState::from_kernel(10), Some(TcpState::Listen));
        assert_eq!(TcpState::from_kernel(11), Some(TcpState::Closing));
        assert_eq!(TcpState::from_kernel(12), Some(TcpState::SynRecv));
        assert_eq!(TcpState::from_kernel(0), None);
        assert_eq!(TcpState::from_kernel(13), None);
        let labels: Vec<_> = TcpState::ALL.iter().map(|s| s.label()).collect();
        assert_eq!(labels.len(), STATES);
    }

    #[test]
    fn counts_by_side_and_host() {
        let mut c = ConnectionCounts::new(PortSlots::new(&[22, 443]));
        c.add(10, 22, 0); // listener on 22
        c.add(1, 22, 50000); // accepted connection on 22
        c.add(1, 50001, 443); // outgoing connection to 443
        c.add(6, 50002, 443); // outgoing, closed by us
        c.add(1, 8080, 9090); // neither configured
        c.add(12, 22, 50003); // request socket on 22
        c.add(13, 22, 0); // unknown state: ignored
        assert_eq!(c.port(0, Side::Local, TcpState::Listen), 1);
        assert_eq!(c.port(0, Side::Local, TcpState::Established), 1);
        assert_eq!(c.port(0, Side::Local, TcpState::SynRecv), 1);
        assert_eq!(c.port(0, Side::Remote, TcpState::Established), 0);
        assert_eq!(c.port(1, Side::Remote, TcpState::Established), 1);
        assert_eq!(c.port(1, Side::Remote, TcpState::TimeWait), 1);
        assert_eq!(c.host(TcpState::Established), 3);
        assert_eq!(c.host(TcpState::Listen), 1);
        assert_eq!(c.host(TcpState::SynRecv), 1);
        c.clear();
        assert_eq!(c.host(TcpState::Established), 0);
        assert_eq!(c.port(0, Side::Local, TcpState::Listen), 0);
    }
}
