//! node_exporter's `udp_queues` collector: bytes queued in the kernel for UDP sockets,
//! summed over `<procfs>/net/udp` and `udp6` (neither file: no data).

use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::is_not_found;
use crate::config::HostConfig;
use crate::metrics::{gauge, Sample};

/// (tx, rx) queue bytes summed over a socket table, each line checked as the procfs
/// library checks it (a malformed line fails the table).
pub fn parse_socket_queues(text: &str, udp: bool) -> anyhow::Result<(f64, f64)> {
    let (mut tx, mut rx) = (0.0, 0.0);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        anyhow::ensure!(
            f.len() >= if udp { 13 } else { 10 },
            "Less than 10 columns found {line:?}"
        );
        let hex_pair = |s: &str, what: &str| -> anyhow::Result<(u64, u64)> {
            let (a, b) = s
                .split_once(':')
                .with_context(|| format!("Unable to parse {what} field in {s:?}"))?;
            Ok((
                u64::from_str_radix(a, 16)
                    .with_context(|| format!("Cannot parse {what} in {s:?}"))?,
                u64::from_str_radix(b, 16)
                    .with_context(|| format!("Cannot parse {what} in {s:?}"))?,
            ))
        };
        let (sl, _) = f[0]
            .split_once(':')
            .with_context(|| format!("Unable to parse sl field in {line:?}"))?;
        sl.parse::<u64>()
            .with_context(|| format!("Unable to parse sl field in {line:?}"))?;
        for (field, what) in [(f[1], "local_address"), (f[2], "rem_address")] {
            let (addr, _) = field
                .split_once(':')
                .with_context(|| format!("Unable to parse {what} field in {field:?}"))?;
            anyhow::ensure!(
                (addr.len() == 8 || addr.len() == 32)
                    && addr.bytes().all(|b| b.is_ascii_hexdigit()),
                "Unable to parse IP {addr}"
            );
            hex_pair(field, what)?;
        }
        u64::from_str_radix(f[3], 16)
            .with_context(|| format!("Cannot parse st value in {line:?}"))?;
        let (t, r) = hex_pair(f[4], "tx/rx queues")?;
        f[7].parse::<u64>()
            .with_context(|| format!("Cannot parse UID value in {line:?}"))?;
        f[9].parse::<u64>()
            .with_context(|| format!("Cannot parse inode value in {line:?}"))?;
        if udp {
            f[12]
                .parse::<u64>()
                .with_context(|| format!("Cannot parse drops value in {line:?}"))?;
        }
        tx += t as f64;
        rx += r as f64;
    }
    Ok((tx, rx))
}

fn read_queues(path: &Path) -> anyhow::Result<(f64, f64)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_socket_queues(&text, true)
}

pub struct UdpQueues {
    procfs_root: PathBuf,
}

impl UdpQueues {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
        }
    }
}

impl Source for UdpQueues {
    fn name(&self) -> &'static str {
        "udp_queues"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let v4 = read_queues(&self.procfs_root.join("net/udp"));
        let v6 = read_queues(&self.procfs_root.join("net/udp6"));
        let mut samples = Vec::new();
        let mut missing = 0;
        for (ip, result) in [("v4", &v4), ("v6", &v6)] {
            match result {
                Ok((tx, rx)) => {
                    samples.push(Sample::new(vec![("ip", ip), ("queue", "tx")], *tx));
                    samples.push(Sample::new(vec![("ip", ip), ("queue", "rx")], *rx));
                }
                Err(e) if is_not_found(e) => missing += 1,
                Err(e) => {
                    // What came before the failing table is still written, as node_exporter.
                    gauge(
                        enc,
                        "node_udp_queues",
                        "Number of allocated memory in the kernel for UDP datagrams in bytes.",
                        &samples,
                    )?;
                    return Err(anyhow::anyhow!("couldn't get udp queued bytes: {e:#}").into());
                }
            }
        }
        gauge(
            enc,
            "node_udp_queues",
            "Number of allocated memory in the kernel for UDP datagrams in bytes.",
            &samples,
        )?;
        if missing == 2 {
            return Err(SourceError::no_data("no net/udp and no net/udp6"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_queues() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  1: 00000000:0044 00000000:0000 07 00000010:00000020 00:00000000 00000000     0        0 16380 2 0000000000000000 0\n\
  2: 0100007F:0035 00000000:0000 07 00000001:00000002 00:00000000 00000000   101        0 16381 2 0000000000000000 5\n";
        assert_eq!(
            super::parse_socket_queues(text, true).unwrap(),
            (17.0, 34.0)
        );
        assert!(super::parse_socket_queues("h\n 1: x\n", true).is_err());
    }
}
