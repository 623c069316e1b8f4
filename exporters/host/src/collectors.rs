//! The collector table, as node_exporter's `registerCollector`: every collector's name
//! (its `collectors.<name>` switch and `--collector.<name>` / `--no-collector.<name>`
//! flags), whether it runs by default, which host roots it reads (a missing root turns
//! off the collectors that need it, said once at start) and how it is built.
//!
//! The node_exporter rows are its 1.9 default set on Linux; after them come vigia-host's
//! own collectors (containers under cAdvisor's names, inventory, energy, anomaly).

use tokio::task::JoinHandle;
use vigia_kit::shutdown::Shutdown;
use vigia_kit::Metrics;

use crate::config::HostConfig;
use crate::node;

/// A host root a collector reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Procfs,
    Sysfs,
    Rootfs,
}

impl Root {
    /// The configuration field that names it.
    pub fn field(self) -> &'static str {
        match self {
            Root::Procfs => "procfs_root",
            Root::Sysfs => "sysfs_root",
            Root::Rootfs => "rootfs",
        }
    }

    pub fn path(self, config: &HostConfig) -> &std::path::Path {
        match self {
            Root::Procfs => &config.procfs_root,
            Root::Sysfs => &config.sysfs_root,
            Root::Rootfs => &config.rootfs,
        }
    }
}

/// What a collector's constructor gets: the configuration, the registry to add its
/// source to, and where to leave a background task (the anomaly loop).
pub struct Setup<'a> {
    pub config: &'a HostConfig,
    pub metrics: &'a mut Metrics,
    pub shutdown: Shutdown,
    pub tasks: &'a mut Vec<JoinHandle<()>>,
}

pub struct CollectorSpec {
    pub name: &'static str,
    pub default: bool,
    pub roots: &'static [Root],
    pub build: fn(&mut Setup<'_>),
}

use Root::{Procfs, Rootfs, Sysfs};

const fn c(name: &'static str, roots: &'static [Root], build: fn(&mut Setup<'_>)) -> CollectorSpec {
    CollectorSpec {
        name,
        default: true,
        roots,
        build,
    }
}

/// Every collector, node_exporter's first (alphabetical, as its `--help` lists them).
pub const COLLECTORS: &[CollectorSpec] = &[
    c("arp", &[Procfs], |s| {
        s.metrics.register_source(node::arp::Arp::new(s.config))
    }),
    c("bcache", &[Sysfs], |s| {
        s.metrics
            .register_source(node::bcache::Bcache::new(s.config))
    }),
    c("bonding", &[Sysfs], |s| {
        s.metrics
            .register_source(node::bonding::Bonding::new(s.config))
    }),
    c("btrfs", &[Sysfs], |s| {
        s.metrics.register_source(node::btrfs::Btrfs::new(s.config))
    }),
    c("conntrack", &[Procfs], |s| {
        s.metrics
            .register_source(node::conntrack::Conntrack::new(s.config))
    }),
    c("cpu", &[Procfs], |s| {
        s.metrics.register_source(node::cpu::Cpu::new(s.config))
    }),
    c("cpufreq", &[Sysfs], |s| {
        s.metrics
            .register_source(node::cpufreq::Cpufreq::new(s.config))
    }),
    c("diskstats", &[Procfs], |s| {
        s.metrics
            .register_source(node::diskstats::Diskstats::new(s.config))
    }),
    c("dmi", &[Sysfs], |s| {
        s.metrics.register_source(node::dmi::Dmi::new(s.config))
    }),
    c("edac", &[Sysfs], |s| {
        s.metrics.register_source(node::edac::Edac::new(s.config))
    }),
    c("entropy", &[Procfs], |s| {
        s.metrics
            .register_source(node::entropy::Entropy::new(s.config))
    }),
    c("fibrechannel", &[Sysfs], |s| {
        s.metrics
            .register_source(node::fibrechannel::Fibrechannel::new(s.config))
    }),
    c("filefd", &[Procfs], |s| {
        s.metrics
            .register_source(node::filefd::Filefd::new(s.config))
    }),
    c("filesystem", &[Procfs, Rootfs], |s| {
        s.metrics
            .register_source(node::filesystem::Filesystem::new(s.config))
    }),
    c("hwmon", &[Sysfs], |s| {
        s.metrics.register_source(node::hwmon::Hwmon::new(s.config))
    }),
    c("infiniband", &[Sysfs], |s| {
        s.metrics
            .register_source(node::infiniband::Infiniband::new(s.config))
    }),
    c("ipvs", &[Procfs], |s| {
        s.metrics.register_source(node::ipvs::Ipvs::new(s.config))
    }),
    c("loadavg", &[Procfs], |s| {
        s.metrics
            .register_source(node::loadavg::Loadavg::new(s.config))
    }),
    c("mdadm", &[Procfs], |s| {
        s.metrics.register_source(node::mdadm::Mdadm::new(s.config))
    }),
    c("meminfo", &[Procfs], |s| {
        s.metrics
            .register_source(node::meminfo::Meminfo::new(s.config))
    }),
    c("netclass", &[Sysfs], |s| {
        s.metrics
            .register_source(node::netclass::Netclass::new(s.config))
    }),
    c("netdev", &[Procfs], |s| {
        s.metrics
            .register_source(node::netdev::Netdev::new(s.config))
    }),
    c("netstat", &[Procfs], |s| {
        s.metrics
            .register_source(node::netstat::Netstat::new(s.config))
    }),
    c("nfs", &[Procfs], |s| {
        s.metrics.register_source(node::nfs::Nfs::new(s.config))
    }),
    c("nfsd", &[Procfs], |s| {
        s.metrics.register_source(node::nfsd::Nfsd::new(s.config))
    }),
    c("nvme", &[Sysfs], |s| {
        s.metrics.register_source(node::nvme::Nvme::new(s.config))
    }),
    c("os", &[Rootfs], |s| {
        s.metrics.register_source(node::os::Os::new(s.config))
    }),
    c("powersupplyclass", &[Sysfs], |s| {
        s.metrics
            .register_source(node::powersupplyclass::PowerSupplyClass::new(s.config))
    }),
    c("pressure", &[Procfs], |s| {
        s.metrics
            .register_source(node::pressure::Pressure::new(s.config))
    }),
    c("rapl", &[Sysfs], |s| {
        s.metrics.register_source(node::rapl::Rapl::new(s.config))
    }),
    c("schedstat", &[Procfs], |s| {
        s.metrics
            .register_source(node::schedstat::Schedstat::new(s.config))
    }),
    c("selinux", &[], |s| {
        s.metrics
            .register_source(node::selinux::Selinux::new(s.config))
    }),
    c("sockstat", &[Procfs], |s| {
        s.metrics
            .register_source(node::sockstat::Sockstats::new(s.config))
    }),
    c("softnet", &[Procfs], |s| {
        s.metrics
            .register_source(node::softnet::Softnet::new(s.config))
    }),
    c("stat", &[Procfs], |s| {
        s.metrics.register_source(node::stat::Stat::new(s.config))
    }),
    c("tapestats", &[Sysfs], |s| {
        s.metrics
            .register_source(node::tapestats::Tapestats::new(s.config))
    }),
    c("textfile", &[], |s| {
        s.metrics
            .register_source(node::textfile::Textfile::new(s.config))
    }),
    c("thermal_zone", &[Sysfs], |s| {
        s.metrics
            .register_source(node::thermal_zone::ThermalZone::new(s.config))
    }),
    c("time", &[], |s| {
        s.metrics.register_source(node::time::Time::new(s.config))
    }),
    c("timex", &[], |s| {
        s.metrics.register_source(node::timex::Timex)
    }),
    c("udp_queues", &[Procfs], |s| {
        s.metrics
            .register_source(node::udp_queues::UdpQueues::new(s.config))
    }),
    c("uname", &[], |s| {
        s.metrics.register_source(node::uname::Uname)
    }),
    c("vmstat", &[Procfs], |s| {
        s.metrics
            .register_source(node::vmstat::Vmstat::new(s.config))
    }),
    c("watchdog", &[Sysfs], |s| {
        s.metrics
            .register_source(node::watchdog::Watchdog::new(s.config))
    }),
    c("xfs", &[Sysfs], |s| {
        s.metrics.register_source(node::xfs::Xfs::new(s.config))
    }),
    c("zfs", &[Procfs], |s| {
        s.metrics.register_source(node::zfs::Zfs::new(s.config))
    }),
    // vigia-host's own.
    c("cgroups", &[Sysfs], crate::cgroups::register),
    c("inventory", &[Procfs], crate::inventory::register),
    c("energy", &[], crate::energy::register),
    c("anomaly", &[Procfs], crate::anomaly::register),
];

pub fn find(name: &str) -> Option<&'static CollectorSpec> {
    COLLECTORS.iter().find(|c| c.name == name)
}

/// Builds every enabled collector whose roots exist. A missing root is logged once,
/// naming the setting, the path and the collectors it turns off.
pub fn register_all(setup: &mut Setup<'_>) {
    let config = setup.config;
    let enabled: Vec<&CollectorSpec> = COLLECTORS
        .iter()
        .filter(|c| config.enabled(c.name))
        .collect();
    let mut missing = Vec::new();
    for root in [Procfs, Sysfs, Rootfs] {
        let path = root.path(config);
        if path.is_dir() {
            continue;
        }
        let readers: Vec<&str> = enabled
            .iter()
            .filter(|c| c.roots.contains(&root))
            .map(|c| c.name)
            .collect();
        if !readers.is_empty() {
            tracing::warn!(
                root = %path.display(),
                field = root.field(),
                collectors = %readers.join(","),
                "root directory not found: collectors reading it are disabled"
            );
        }
        missing.push(root);
    }
    for spec in enabled {
        if spec.roots.iter().any(|r| missing.contains(r)) {
            continue;
        }
        (spec.build)(setup);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_flag_safe() {
        let mut names: Vec<&str> = COLLECTORS.iter().map(|c| c.name).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate collector names");
        for n in names {
            assert!(n
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()));
        }
    }
}
