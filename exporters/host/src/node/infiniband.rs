//! node_exporter's `infiniband` collector: InfiniBand HCAs from
//! `<sysfs>/class/infiniband/<device>/` (firmware, board) and each port's state, rate
//! and counters (`counters/`, `counters_ext/`; data counters are in 4-octet words).
//! The Mellanox `hw_counters/` (mlx5, irdma) are not read.

use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::{go_uint, list, sys_read};
use crate::config::HostConfig;
use crate::metrics::{Families, Kind};

/// (directory, file, family suffix, help, multiplier).
const COUNTERS: [(&str, &str, &str, &str, u64); 30] = [
    ("counters_ext", "port_multicast_rcv_packets", "legacy_multicast_packets_received_total", "Number of multicast packets received", 1),
    ("counters_ext", "port_multicast_xmit_packets", "legacy_multicast_packets_transmitted_total", "Number of multicast packets transmitted", 1),
    ("counters_ext", "port_rcv_data_64", "legacy_data_received_bytes_total", "Number of data octets received on all links", 4),
    ("counters_ext", "port_rcv_packets_64", "legacy_packets_received_total", "Number of data packets received on all links", 1),
    ("counters_ext", "port_unicast_rcv_packets", "legacy_unicast_packets_received_total", "Number of unicast packets received", 1),
    ("counters_ext", "port_unicast_xmit_packets", "legacy_unicast_packets_transmitted_total", "Number of unicast packets transmitted", 1),
    ("counters_ext", "port_xmit_data_64", "legacy_data_transmitted_bytes_total", "Number of data octets transmitted on all links", 4),
    ("counters_ext", "port_xmit_packets_64", "legacy_packets_transmitted_total", "Number of data packets received on all links", 1),
    ("counters", "excessive_buffer_overrun_errors", "excessive_buffer_overrun_errors_total", "Number of times that OverrunErrors consecutive flow control update periods occurred, each having at least one overrun error.", 1),
    ("counters", "link_downed", "link_downed_total", "Number of times the link failed to recover from an error state and went down", 1),
    ("counters", "link_error_recovery", "link_error_recovery_total", "Number of times the link successfully recovered from an error state", 1),
    ("counters", "local_link_integrity_errors", "local_link_integrity_errors_total", "Number of times that the count of local physical errors exceeded the threshold specified by LocalPhyErrors.", 1),
    ("counters", "multicast_rcv_packets", "multicast_packets_received_total", "Number of multicast packets received (including errors)", 1),
    ("counters", "multicast_xmit_packets", "multicast_packets_transmitted_total", "Number of multicast packets transmitted (including errors)", 1),
    ("counters", "port_rcv_constraint_errors", "port_constraint_errors_received_total", "Number of packets received on the switch physical port that are discarded", 1),
    ("counters", "port_xmit_constraint_errors", "port_constraint_errors_transmitted_total", "Number of packets not transmitted from the switch physical port", 1),
    ("counters", "port_rcv_data", "port_data_received_bytes_total", "Number of data octets received on all links", 4),
    ("counters", "port_xmit_data", "port_data_transmitted_bytes_total", "Number of data octets transmitted on all links", 4),
    ("counters", "port_rcv_discards", "port_discards_received_total", "Number of inbound packets discarded by the port because the port is down or congested", 1),
    ("counters", "port_xmit_discards", "port_discards_transmitted_total", "Number of outbound packets discarded by the port because the port is down or congested", 1),
    ("counters", "port_rcv_errors", "port_errors_received_total", "Number of packets containing an error that were received on this port", 1),
    ("counters", "port_rcv_packets", "port_packets_received_total", "Number of packets received on all VLs by this port (including errors)", 1),
    ("counters", "port_xmit_packets", "port_packets_transmitted_total", "Number of packets transmitted on all VLs from this port (including errors)", 1),
    ("counters", "port_xmit_wait", "port_transmit_wait_total", "Number of ticks during which the port had data to transmit but no data was sent during the entire tick", 1),
    ("counters", "unicast_rcv_packets", "unicast_packets_received_total", "Number of unicast packets received (including errors)", 1),
    ("counters", "unicast_xmit_packets", "unicast_packets_transmitted_total", "Number of unicast packets transmitted (including errors)", 1),
    ("counters", "port_rcv_remote_physical_errors", "port_receive_remote_physical_errors_total", "Number of packets marked with the EBP (End of Bad Packet) delimiter received on the port.", 1),
    ("counters", "port_rcv_switch_relay_errors", "port_receive_switch_relay_errors_total", "Number of packets that could not be forwarded by the switch.", 1),
    ("counters", "symbol_error", "symbol_error_total", "Number of minor link errors detected on one or more physical lanes.", 1),
    ("counters", "VL15_dropped", "vl15_dropped_total", "Number of incoming VL15 packets dropped due to resource limitations.", 1),
];

/// `4: ACTIVE` → (4, ACTIVE).
fn state(text: &str) -> anyhow::Result<(u64, String)> {
    let (id, name) = text
        .split_once(':')
        .with_context(|| format!("failed to split {text} into 'ID: NAME'"))?;
    anyhow::ensure!(
        !name.contains(':'),
        "failed to split {text} into 'ID: NAME'"
    );
    Ok((
        id.trim()
            .parse()
            .with_context(|| format!("failed to convert {} into uint", id.trim()))?,
        name.trim().to_string(),
    ))
}

/// `100 Gb/sec (4X EDR)` → bytes per second.
fn rate(text: &str) -> anyhow::Result<f64> {
    let (gbps, _) = text
        .split_once(' ')
        .with_context(|| format!("failed to split {text:?}"))?;
    let v: f32 = gbps
        .trim()
        .parse()
        .with_context(|| format!("failed to convert {} into uint", gbps.trim()))?;
    Ok(((v as f64) * 125_000_000.0).floor())
}

/// A counter file's value; `None` when unreadable in a way the procfs library skips, or
/// when the port has no performance agent ("N/A (no PMA)").
fn counter(path: &Path) -> anyhow::Result<Option<u64>> {
    match sys_read(path) {
        Ok(v) => {
            if v.contains("N/A (no PMA)") {
                return Ok(None);
            }
            match go_uint(&v) {
                Some(n) => Ok(Some(n)),
                None => anyhow::bail!("{}: {v:?} is not a counter", path.display()),
            }
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::InvalidInput
            ) || e.raw_os_error() == Some(libc::EOPNOTSUPP) =>
        {
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| path.display().to_string()),
    }
}

pub struct Infiniband {
    sysfs_root: PathBuf,
}

impl Infiniband {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            sysfs_root: config.sysfs_root.clone(),
        }
    }

    fn read(&self, out: &mut Families) -> anyhow::Result<()> {
        let base = self.sysfs_root.join("class/infiniband");
        for device in list(&base)? {
            let dir = base.join(&device);
            let fw =
                sys_read(&dir.join("fw_ver")).context("failed to read HCA firmware version")?;
            let optional = |f: &str| -> anyhow::Result<String> {
                match sys_read(&dir.join(f)) {
                    Ok(v) => Ok(v),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                    Err(e) => Err(e).with_context(|| format!("{device}/{f}")),
                }
            };
            let (board, hca) = (optional("board_id")?, optional("hca_type")?);
            out.add(
                Kind::Gauge,
                "node_infiniband_info",
                "Non-numeric data from /sys/class/infiniband/<device>, value is always 1.",
                &[
                    ("device", &device),
                    ("board_id", &board),
                    ("firmware_version", &fw),
                    ("hca_type", &hca),
                ],
                1.0,
            );
            let ports_dir = dir.join("ports");
            for port in list(&ports_dir).with_context(|| {
                format!("failed to list InfiniBand ports at {}", ports_dir.display())
            })? {
                port.parse::<u32>()
                    .with_context(|| format!("failed to convert {port} into uint"))?;
                let p = ports_dir.join(&port);
                let read = |f: &str| -> anyhow::Result<String> {
                    std::fs::read_to_string(p.join(f))
                        .with_context(|| format!("{}/{f}", p.display()))
                };
                let (state_id, _) = state(&read("state")?)?;
                let (phys_id, _) = state(&read("phys_state")?)?;
                let bytes = rate(&read("rate")?)?;
                let labels = [("device", device.as_str()), ("port", port.as_str())];
                out.add(
                    Kind::Gauge,
                    "node_infiniband_state_id",
                    "State of the InfiniBand port (0: no change, 1: down, 2: init, 3: armed, 4: active, 5: act defer)",
                    &labels,
                    state_id as f64,
                );
                out.add(
                    Kind::Gauge,
                    "node_infiniband_physical_state_id",
                    "Physical state of the InfiniBand port (0: no change, 1: sleep, 2: polling, 3: disable, 4: shift, 5: link up, 6: link error recover, 7: phytest)",
                    &labels,
                    phys_id as f64,
                );
                out.add(
                    Kind::Gauge,
                    "node_infiniband_rate_bytes_per_second",
                    "Maximum signal transfer rate",
                    &labels,
                    bytes,
                );
                if device.starts_with("irdma") {
                    continue;
                }
                if !p.join("counters").is_dir() {
                    anyhow::bail!("{}/counters: no such directory", p.display());
                }
                for (sub, file, suffix, help, factor) in COUNTERS {
                    if let Some(v) = counter(&p.join(sub).join(file))? {
                        out.add(
                            Kind::Counter,
                            &format!("node_infiniband_{suffix}"),
                            help,
                            &labels,
                            (v * factor) as f64,
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

impl Source for Infiniband {
    fn name(&self) -> &'static str {
        "infiniband"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        if !self.sysfs_root.join("class/infiniband").exists() {
            return Err(SourceError::no_data("infiniband statistics not found"));
        }
        let mut out = Families::default();
        self.read(&mut out)
            .context("error obtaining InfiniBand class info")?;
        out.write(enc)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn states_and_rates() {
        assert_eq!(
            super::state("4: ACTIVE\n").unwrap(),
            (4, "ACTIVE".to_string())
        );
        assert!(super::state("ACTIVE").is_err());
        assert_eq!(
            super::rate("100 Gb/sec (4X EDR)\n").unwrap(),
            12_500_000_000.0
        );
        assert_eq!(super::rate("2.5 Gb/sec (1X SDR)").unwrap(), 312_500_000.0);
    }
}
