//! What vigia-ports exposes: socket counts per configured port, side and state, host-wide
//! counts per state, and which source is in use. Every (port, side, state) series is
//! emitted on every scrape, zeros included, so alert rules never meet a missing series.

use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use vigia_kit::{Metrics, Source, SourceError};

use crate::counts::{ConnectionCounts, Side, TcpState};
use crate::sockets::SocketTable;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabels {
    port: u16,
    side: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Registers the socket counts (read at scrape time) and `vigia_ports_source_info`.
pub fn register(metrics: &mut Metrics, table: Arc<SocketTable>) {
    metrics.registry_mut().register(
        "vigia_ports_source",
        "Where vigia-ports reads the socket table: netlink (sock_diag) or procfs",
        Info::new(vec![("source".to_string(), table.source().to_string())]),
    );
    metrics.register_source(SocketCounts { table });
}

struct SocketCounts {
    table: Arc<SocketTable>,
}

impl Source for SocketCounts {
    fn name(&self) -> &'static str {
        "sockets"
    }

    fn collect(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        self.table.read(|counts| encode(counts, encoder))??;
        Ok(())
    }
}

fn encode(counts: &ConnectionCounts, encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(
        "vigia_port_connections",
        "TCP sockets whose local (side=local) or remote (side=remote) port is the configured port, by state; IPv4 and IPv6",
        None,
        MetricType::Gauge,
    )?;
    for (slot, &port) in counts.ports().iter().enumerate() {
        for side in Side::ALL {
            for state in TcpState::ALL {
                let labels = PortLabels {
                    port,
                    side: side.label(),
                    state: state.label(),
                };
                ConstGauge::new(counts.port(slot, side, state))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
    }
    let mut family = encoder.encode_descriptor(
        "vigia_tcp_connections",
        "All TCP sockets of the host (its network namespace) by state; IPv4 and IPv6",
        None,
        MetricType::Gauge,
    )?;
    for state in TcpState::ALL {
        let labels = StateLabels {
            state: state.label(),
        };
        ConstGauge::new(counts.host(state)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}
