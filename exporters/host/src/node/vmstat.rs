//! node_exporter's `vmstat` collector: the fields of `<procfs>/vmstat` that match
//! `vmstat.fields` (untyped, as node_exporter writes them).

use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use regex::Regex;
use vigia_kit::{Source, SourceError};

use super::util::read;
use crate::config::{HostConfig, DEFAULT_VMSTAT_FIELDS};
use crate::metrics::{one, untyped};

pub struct Vmstat {
    procfs_root: PathBuf,
    fields: Option<Regex>,
}

impl Vmstat {
    pub fn new(config: &HostConfig) -> Self {
        let pattern = config
            .vmstat
            .fields
            .as_deref()
            .unwrap_or(DEFAULT_VMSTAT_FIELDS);
        Self {
            procfs_root: config.procfs_root.clone(),
            fields: Regex::new(pattern).ok(),
        }
    }
}

impl Source for Vmstat {
    fn name(&self) -> &'static str {
        "vmstat"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let text = read(&self.procfs_root.join("vmstat"))?;
        let mut fields = Vec::new();
        for line in text.lines() {
            let mut parts = line.split_ascii_whitespace();
            let (Some(name), value) = (parts.next(), parts.next()) else {
                continue;
            };
            let value: f64 = value
                .with_context(|| format!("vmstat line {line:?}"))?
                .parse()
                .with_context(|| format!("vmstat line {line:?}"))?;
            if self.fields.as_ref().is_some_and(|r| r.is_match(name)) {
                fields.push((name, value));
            }
        }
        for (name, value) in fields {
            untyped(
                enc,
                &format!("node_vmstat_{name}"),
                &format!("/proc/vmstat information field {name}."),
                &one(Some(value)),
            )?;
        }
        Ok(())
    }
}
