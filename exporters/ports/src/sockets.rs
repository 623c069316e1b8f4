//! The socket table as the rest of the exporter sees it: one of the two data sources,
//! chosen once at startup, read afresh on every call (no cache, so a scrape never shows
//! stale counts).

use std::sync::{Arc, Mutex};

use vigia_kit::ConfigError;

use crate::config::{Config, SourceKind};
use crate::counts::{ConnectionCounts, PortSlots};
use crate::proc_net::ProcNet;
use crate::sock_diag::SockDiag;

#[derive(Debug)]
enum Reader {
    Netlink(SockDiag),
    Procfs(ProcNet),
}

impl Reader {
    fn read(&mut self, counts: &mut ConnectionCounts) -> anyhow::Result<()> {
        match self {
            Reader::Netlink(r) => r.read(counts),
            Reader::Procfs(r) => r.read(counts),
        }
    }
}

#[derive(Debug)]
struct ReadState {
    reader: Reader,
    /// Reused across reads, so a read allocates nothing.
    counts: ConnectionCounts,
}

/// The kernel's TCP socket table, read through the source in use.
#[derive(Debug)]
pub struct SocketTable {
    source: &'static str,
    state: Mutex<ReadState>,
}

impl SocketTable {
    /// Opens the configured source and reads it once, so a source that cannot work is
    /// reported at startup (exit 2) rather than at every scrape. With `auto`, a failing
    /// netlink falls back to procfs with a warning.
    pub fn open(config: &Config) -> Result<Arc<SocketTable>, ConfigError> {
        let slots = PortSlots::new(&config.ports);
        let mut counts = ConnectionCounts::new(slots);
        let procfs = || Reader::Procfs(ProcNet::new(&config.procfs_root));
        let (source, mut reader) = match config.source {
            SourceKind::Procfs => ("procfs", procfs()),
            SourceKind::Netlink | SourceKind::Auto => ("netlink", Reader::Netlink(SockDiag::new())),
        };
        let (source, reader) = match reader.read(&mut counts) {
            Ok(()) => (source, reader),
            Err(e) if config.source == SourceKind::Auto => {
                tracing::warn!(error = %format!("{e:#}"), procfs_root = %config.procfs_root.display(),
                    "netlink sock_diag is unavailable; reading procfs instead");
                let mut reader = procfs();
                counts.clear();
                reader.read(&mut counts).map_err(|e| {
                    ConfigError::new(
                        "procfs_root",
                        format!("neither netlink nor procfs can be read: {e:#}"),
                    )
                })?;
                ("procfs", reader)
            }
            Err(e) => {
                let field = if config.source == SourceKind::Procfs {
                    "procfs_root"
                } else {
                    "source"
                };
                return Err(ConfigError::new(
                    field,
                    format!("the {source} source cannot be read: {e:#}"),
                ));
            }
        };
        Ok(Arc::new(SocketTable {
            source,
            state: Mutex::new(ReadState { reader, counts }),
        }))
    }

    /// `netlink` or `procfs`.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// Reads the table now and hands the counts to `use_counts`.
    pub fn read<R>(&self, use_counts: impl FnOnce(&ConnectionCounts) -> R) -> anyhow::Result<R> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ReadState { reader, counts } = &mut *state;
        counts.clear();
        reader.read(counts)?;
        Ok(use_counts(counts))
    }
}
