//! node_exporter's `filefd` collector: `<procfs>/sys/fs/file-nr` (allocated and maximum
//! file handles).

use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::read;
use crate::config::HostConfig;
use crate::metrics::{gauge, one};

pub struct Filefd {
    procfs_root: PathBuf,
}

impl Filefd {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            procfs_root: config.procfs_root.clone(),
        }
    }
}

/// (allocated, maximum) from file-nr's three columns (the middle one is always 0 since
/// Linux 2.6).
pub fn parse_file_nr(text: &str) -> anyhow::Result<(f64, f64)> {
    let f: Vec<&str> = text.split_ascii_whitespace().collect();
    anyhow::ensure!(
        f.len() == 3,
        "couldn't get file-nr: unexpected number of fields in {text:?}"
    );
    let n = |s: &str| -> anyhow::Result<f64> {
        s.parse::<u64>()
            .map(|v| v as f64)
            .with_context(|| format!("invalid value {s} in file-nr"))
    };
    Ok((n(f[0])?, n(f[2])?))
}

impl Source for Filefd {
    fn name(&self) -> &'static str {
        "filefd"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let (allocated, maximum) = parse_file_nr(&read(&self.procfs_root.join("sys/fs/file-nr"))?)?;
        gauge(
            enc,
            "node_filefd_allocated",
            "File descriptor statistics: allocated.",
            &one(Some(allocated)),
        )?;
        gauge(
            enc,
            "node_filefd_maximum",
            "File descriptor statistics: maximum.",
            &one(Some(maximum)),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_file_nr() {
        assert_eq!(
            super::parse_file_nr("1024\t0\t1631329\n").unwrap(),
            (1024.0, 1631329.0)
        );
        assert!(super::parse_file_nr("1 2\n").is_err());
        assert!(super::parse_file_nr("a 0 1\n").is_err());
    }
}
