//! node_exporter's `mdadm` collector: software RAID arrays from `<procfs>/mdstat`
//! (disks active, failed, spare and required, blocks synced, array state). No md driver
//! loaded (no file): no data.

use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use regex::Regex;
use vigia_kit::{Source, SourceError};

use crate::config::HostConfig;
use crate::metrics::{gauge, Sample};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MdStat {
    pub name: String,
    /// active, inactive, recovering, resyncing or checking.
    pub state: String,
    pub disks_active: i64,
    pub disks_total: i64,
    pub disks_failed: i64,
    pub disks_spare: i64,
    pub blocks_total: i64,
    pub blocks_synced: i64,
}

/// The procfs library's parser, rule for rule (what node_exporter reports depends on it).
pub fn parse_mdstat(text: &str) -> anyhow::Result<Vec<MdStat>> {
    let status_re =
        Regex::new(r"(\d+) blocks .*\[(\d+)/(\d+)\] \[([U_]+)\]").expect("constant regex");
    let blocks_re = Regex::new(r"\((\d+/\d+)\)").expect("constant regex");
    let pct_re = Regex::new(r"= (.+)%").expect("constant regex");
    let finish_re = Regex::new(r"finish=(.+)min").expect("constant regex");
    let speed_re = Regex::new(r"speed=(.+)[A-Z]").expect("constant regex");
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty()
            || line.starts_with(' ')
            || line.starts_with("Personalities")
            || line.starts_with("unused")
        {
            continue;
        }
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        anyhow::ensure!(fields.len() >= 3, "Expected 3+ lines, got {line:?}");
        let name = fields[0].to_string();
        let mut state = fields[2].to_string();
        anyhow::ensure!(lines.len() > i + 3, "Too few lines for md device: {name:?}");
        let failed = line.matches("(F)").count() as i64;
        let spare = line.matches("(S)").count() as i64;
        let status = lines[i + 1];
        let size: i64 = status
            .split_ascii_whitespace()
            .next()
            .with_context(|| format!("Unexpected statusline {status:?}"))?
            .parse()
            .with_context(|| format!("Unexpected statusline {status:?}"))?;
        let (active, total) = if line.contains("raid0") || line.contains("linear") {
            let t = line.matches('[').count() as i64;
            (t, t)
        } else if line.contains("inactive") {
            (0, 0)
        } else {
            let m = status_re
                .captures(status)
                .with_context(|| format!("Could not fild all substring matches {status}"))?;
            (m[3].parse()?, m[2].parse()?)
        };
        let mut sync_idx = i + 2;
        if lines[i + 2].contains("bitmap") {
            sync_idx += 1;
        }
        let sync = lines.get(sync_idx).copied().unwrap_or("");
        let mut synced = size;
        let (recovering, resyncing, checking) = (
            sync.contains("recovery"),
            sync.contains("resync"),
            sync.contains("check"),
        );
        if recovering || resyncing || checking {
            state = if recovering {
                "recovering"
            } else if checking {
                "checking"
            } else {
                "resyncing"
            }
            .to_string();
            if sync.contains("PENDING") || sync.contains("DELAYED") {
                synced = 0;
            } else {
                let bad = || format!("Cannot parse sync line in md device: {name:?}");
                let b = blocks_re.captures(sync).with_context(bad)?;
                let (done, _) = b[1].split_once('/').with_context(bad)?;
                synced = done.parse().with_context(bad)?;
                let pct = pct_re.captures(sync).with_context(bad)?;
                pct[1].trim().parse::<f64>().with_context(bad)?;
                let finish = finish_re.captures(sync).with_context(bad)?;
                finish[1].parse::<f64>().with_context(bad)?;
                let speed = speed_re.captures(sync).with_context(bad)?;
                speed[1].parse::<f64>().with_context(bad)?;
            }
        }
        out.push(MdStat {
            name,
            state,
            disks_active: active,
            disks_total: total,
            disks_failed: failed,
            disks_spare: spare,
            blocks_total: size,
            blocks_synced: synced,
        });
    }
    Ok(out)
}

pub struct Mdadm {
    procfs_root: PathBuf,
}

impl Mdadm {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
        }
    }
}

impl Source for Mdadm {
    fn name(&self) -> &'static str {
        "mdadm"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let text = match std::fs::read_to_string(self.procfs_root.join("mdstat")) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SourceError::no_data(
                    "Not collecting mdstat, file does not exist",
                ))
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("error parsing mdstatus")
                    .into())
            }
        };
        let arrays = parse_mdstat(&text).context("error parsing mdstatus")?;
        let per = |f: fn(&MdStat) -> i64| -> Vec<Sample<'_>> {
            arrays
                .iter()
                .map(|a| Sample::new(vec![("device", a.name.as_str())], f(a) as f64))
                .collect()
        };
        gauge(
            enc,
            "node_md_disks_required",
            "Total number of disks of device.",
            &per(|a| a.disks_total),
        )?;
        let mut disks = Vec::new();
        let mut states = Vec::new();
        for a in &arrays {
            for (state, n) in [
                ("active", a.disks_active),
                ("failed", a.disks_failed),
                ("spare", a.disks_spare),
            ] {
                disks.push(Sample::new(
                    vec![("device", a.name.as_str()), ("state", state)],
                    n as f64,
                ));
            }
            for (label, state) in [
                ("active", "active"),
                ("inactive", "inactive"),
                ("recovering", "recovering"),
                ("resync", "resyncing"),
                ("check", "checking"),
            ] {
                states.push(Sample::new(
                    vec![("device", a.name.as_str()), ("state", label)],
                    f64::from(u8::from(a.state == state)),
                ));
            }
        }
        gauge(
            enc,
            "node_md_disks",
            "Number of active/failed/spare disks of device.",
            &disks,
        )?;
        gauge(
            enc,
            "node_md_state",
            "Indicates the state of md-device.",
            &states,
        )?;
        gauge(
            enc,
            "node_md_blocks",
            "Total number of blocks on device.",
            &per(|a| a.blocks_total),
        )?;
        gauge(
            enc,
            "node_md_blocks_synced",
            "Number of blocks synced on device.",
            &per(|a| a.blocks_synced),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_mdstat() {
        let text = "Personalities : [raid1] [raid6] [raid5] [raid4]\n\
md3 : active raid6 sda1[8] sdh1[7] sdg1[6] sdf1[5] sde1[11] sdd1[3] sdc1[10] sdb1[9]\n      5853468288 blocks super 1.2 level 6, 64k chunk, algorithm 2 [8/8] [UUUUUUUU]\n\n\
md127 : active raid1 sdi2[0] sdj2[1](F)\n      312319552 blocks [2/1] [U_]\n      [=>...................]  recovery =  8.5% (26624/312319552) finish=9.0min speed=8192K/sec\n\n\
unused devices: <none>\n";
        let md = super::parse_mdstat(text).unwrap();
        assert_eq!(md.len(), 2);
        assert_eq!(
            (md[0].disks_active, md[0].disks_total, md[0].blocks_total),
            (8, 8, 5853468288)
        );
        assert_eq!(md[1].state, "recovering");
        assert_eq!((md[1].disks_failed, md[1].blocks_synced), (1, 26624));
    }
}
