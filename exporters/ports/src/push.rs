//! The optional periodic push of the same counts to InfluxDB, through the kit's writer:
//! every `influxdb_interval`, one read of the socket table becomes one point per
//! (port, side, state) in `vigia_port_connections` and one per state in
//! `vigia_tcp_connections`, all with the same timestamp, zeros included (as in
//! Prometheus, so a query over a quiet port finds rows). The writer adds the `host` tag
//! (`influxdb.tags`, fed by the older `host:` setting).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use vigia_kit::influx::{InfluxWriter, Point};
use vigia_kit::metrics::ErrorCounter;
use vigia_kit::shutdown::Shutdown;

use crate::counts::{ConnectionCounts, Side, TcpState};
use crate::sockets::SocketTable;

/// The points of one read of the socket table.
pub fn points(counts: &ConnectionCounts, at: SystemTime) -> Vec<Point> {
    let mut out = Vec::with_capacity(
        counts.ports().len() * Side::ALL.len() * TcpState::ALL.len() + TcpState::ALL.len(),
    );
    for (slot, &port) in counts.ports().iter().enumerate() {
        let port = port.to_string();
        for side in Side::ALL {
            for state in TcpState::ALL {
                out.push(
                    Point::new("vigia_port_connections")
                        .tag("port", port.as_str())
                        .tag("side", side.label())
                        .tag("state", state.label())
                        .field("count", counts.port(slot, side, state))
                        .timestamp(at),
                );
            }
        }
    }
    for state in TcpState::ALL {
        out.push(
            Point::new("vigia_tcp_connections")
                .tag("state", state.label())
                .field("count", counts.host(state))
                .timestamp(at),
        );
    }
    out
}

/// Pushes the counts every `interval` until `shutdown`. A failed read is logged and
/// counted under `vigia_errors_total{source="sockets"}`, like a failed scrape.
pub fn spawn(
    table: Arc<SocketTable>,
    writer: InfluxWriter,
    interval: Duration,
    errors: ErrorCounter,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.wait() => return,
            }
            let table = table.clone();
            // The read is a few system calls or a file read: off the async threads.
            let read = tokio::task::spawn_blocking(move || {
                table.read(|counts| points(counts, SystemTime::now()))
            })
            .await;
            match read {
                Ok(Ok(points)) => {
                    for point in points {
                        writer.write(point);
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "reading the socket table for InfluxDB failed");
                    errors.inc("sockets");
                }
                Err(e) => {
                    tracing::error!(error = %e, "socket table read task failed");
                    errors.inc("sockets");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::PortSlots;

    #[test]
    fn one_point_per_port_side_state_and_per_host_state() {
        let mut counts = ConnectionCounts::new(PortSlots::new(&[22, 443]));
        counts.add(10, 22, 0);
        counts.add(1, 22, 50000);
        counts.add(1, 22, 50001);
        counts.add(6, 50002, 443);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let lines: Vec<String> = points(&counts, at)
            .iter()
            .map(|p| p.to_line(SystemTime::UNIX_EPOCH, false).unwrap())
            .collect();
        assert_eq!(lines.len(), 2 * 2 * 11 + 11);
        let ts = "1700000000000000000\n";
        for expected in [
            format!("vigia_port_connections,port=22,side=local,state=listen count=1i {ts}"),
            format!("vigia_port_connections,port=22,side=local,state=established count=2i {ts}"),
            format!("vigia_port_connections,port=22,side=remote,state=established count=0i {ts}"),
            format!("vigia_port_connections,port=443,side=remote,state=time_wait count=1i {ts}"),
            format!("vigia_port_connections,port=443,side=local,state=closing count=0i {ts}"),
            format!("vigia_tcp_connections,state=established count=2i {ts}"),
            format!("vigia_tcp_connections,state=time_wait count=1i {ts}"),
            format!("vigia_tcp_connections,state=syn_recv count=0i {ts}"),
        ] {
            assert!(
                lines.contains(&expected),
                "missing {expected:?} in {lines:#?}"
            );
        }
        let distinct: std::collections::HashSet<_> = lines.iter().collect();
        assert_eq!(distinct.len(), lines.len(), "no two points share a series");
    }
}
