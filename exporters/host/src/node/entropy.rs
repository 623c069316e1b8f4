//! node_exporter's `entropy` collector: `<procfs>/sys/kernel/random/{entropy_avail,poolsize}`.

use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::read_attr;
use crate::config::HostConfig;
use crate::metrics::{gauge, one};

pub struct Entropy {
    procfs_root: PathBuf,
}

impl Entropy {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
        }
    }
}

impl Source for Entropy {
    fn name(&self) -> &'static str {
        "entropy"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let dir = self.procfs_root.join("sys/kernel/random");
        let read = |f: &str| -> anyhow::Result<f64> {
            let text = read_attr(&dir.join(f))
                .with_context(|| format!("couldn't get entropy_avail: reading {f}"))?;
            text.parse::<u64>()
                .map(|v| v as f64)
                .with_context(|| format!("couldn't parse {f}: {text:?}"))
        };
        let available = read("entropy_avail")?;
        let pool = read("poolsize")?;
        gauge(
            enc,
            "node_entropy_available_bits",
            "Bits of available entropy.",
            &one(Some(available)),
        )?;
        gauge(
            enc,
            "node_entropy_pool_size_bits",
            "Bits of entropy pool.",
            &one(Some(pool)),
        )?;
        Ok(())
    }
}
