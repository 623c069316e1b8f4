//! vigia-host next to the real node_exporter, both Debian bookworm's 1.5 (package
//! `prometheus-node-exporter`) and trixie's 1.9 (`scripts/fetch-tools.sh node-exporter`
//! unpacks it under `.cache/`), with upstream default flags, family by family: on this
//! machine, and on a fixture tree (`tests/fixtures/node-tree.txt`, the file layouts of
//! node_exporter's `collector/fixtures`) that all three read through `--path.procfs`,
//! `--path.sysfs`, `--path.rootfs` and `--path.udev.data`.
//!
//! For every family (node_* and process_*): the same name, TYPE, HELP and label sets;
//! every family node_exporter writes, vigia-host writes too; every family vigia-host
//! writes, node_exporter writes. Values: the scrapes are interleaved — vigia,
//! node_exporter, vigia, node_exporter — so a counter read by node_exporter must lie
//! between vigia's readings before and after it, and a gauge must lie within the range
//! of vigia's two readings, widened only for the gauges named in `moving` (with why).
//! On the fixture tree nothing moves but statfs (the tree lives on this machine's
//! /tmp) and the clock, so values are exact. process_* values are each process's own
//! and only named, typed and labelled alike.
//!
//! vigia-host follows 1.9. What 1.5 lacks or does differently is compared against 1.9
//! only, listed in `ONLY_IN_1_9`, `LABELS_NEW_IN_1_9` and `CHANGED_SINCE_1_5` with the
//! reason, and the fixture test checks that each listed family and label is one 1.9
//! writes there and 1.5 does not. (On another machine 1.5 may write some of them, a
//! cpufreq or thermal zone it can read: they are then compared with 1.5 too.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, require_tool, wait_until_serving, LabelSet, Launch, Running, Scrape};

/// Upstream node_exporter 1.9's default; Debian's package also leaves out /run, /mnt and
/// /media, so the test passes this to both node_exporters (vigia-host's default).
const MOUNT_POINTS_EXCLUDE: &str =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// 1.9's default leaves out zram devices too (1.5's: `^(ram|loop|...`); 1.5 is given 1.9's.
const DISKSTATS_EXCLUDE: &str = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";

/// Families node_exporter 1.5 does not write (on this machine or the fixture tree):
/// compared against 1.9 only. Prefixes of family names, with what 1.9 added.
const ONLY_IN_1_9: &[(&str, &str)] = &[
    ("node_watchdog_", "the watchdog collector is new in 1.9"),
    (
        "node_btrfs_commit",
        "btrfs commit statistics are new in 1.9",
    ),
    (
        "node_btrfs_commits_total",
        "btrfs commit statistics are new in 1.9",
    ),
    (
        "node_btrfs_last_commit_seconds",
        "btrfs commit statistics are new in 1.9",
    ),
    (
        "node_btrfs_max_commit_seconds",
        "btrfs commit statistics are new in 1.9",
    ),
    (
        "node_softnet_backlog_len",
        "softnet's backlog and RPS columns are new in 1.9",
    ),
    (
        "node_softnet_cpu_collision_total",
        "softnet's backlog and RPS columns are new in 1.9",
    ),
    (
        "node_softnet_flow_limit_count_total",
        "softnet's backlog and RPS columns are new in 1.9",
    ),
    (
        "node_softnet_received_rps_total",
        "softnet's backlog and RPS columns are new in 1.9",
    ),
    (
        "node_netstat_TcpExt_TCPOFOQueue",
        "1.9's netstat default field list has it",
    ),
    (
        "node_netstat_TcpExt_TCPRcvQDrop",
        "1.9's netstat default field list has it",
    ),
    ("node_pressure_irq_", "IRQ pressure is new in 1.9"),
    ("node_zfs_dbuf_", "1.9 reads ZFS's dbufstats"),
    (
        "node_zfs_zfetch_signed_delta",
        "1.9 reads zfetchstats' signed fields",
    ),
    ("node_filesystem_mount_info", "new in 1.9"),
    (
        "node_cooling_device_",
        "1.5's thermal_zone fails on a zone without policy, 1.9 skips the file",
    ),
    (
        "node_thermal_zone_temp",
        "1.5's thermal_zone fails on a zone without policy, 1.9 skips the file",
    ),
    (
        "node_cpu_frequency_",
        "1.5's cpufreq fails on a CPU without scaling_available_governors",
    ),
    (
        "node_cpu_scaling_",
        "1.5's cpufreq fails on a CPU without scaling_available_governors",
    ),
];

/// Labels 1.9 added to families 1.5 has: left out of vigia-host's series before they are
/// compared with 1.5's.
const LABELS_NEW_IN_1_9: &[(&str, &str, &str)] = &[
    (
        "node_filesystem_",
        "device_error",
        "1.9 says why statfs failed",
    ),
    ("node_disk_info", "rotational", "new in 1.9"),
    ("node_network_info", "adminstate", "new in 1.9"),
];

/// Families whose series or HELP node_exporter changed after 1.5: name and TYPE compared
/// with 1.5, HELP, label sets and values with 1.9 only.
const CHANGED_SINCE_1_5: &[(&str, &str)] = &[
    (
        "node_nfsd_requests_total",
        "1.9's procfs reads NFSv4 operations by their place in the 4.x table (SetClientID, ...)",
    ),
    (
        "node_disk_info",
        "1.9 prefers udev's SCSI_IDENT_SERIAL for the serial",
    ),
    (
        "node_filesystem_readonly",
        "1.9 writes it for a mount whose statfs failed too",
    ),
    (
        "node_zfs_zpool_dataset_",
        "1.5 cuts a dataset's name at its first space",
    ),
    ("node_zfs_zpool_state", "1.9 knows the suspended state"),
];

/// Collectors whose node_scrape_collector_success changed after 1.5: compared with 1.9
/// only.
const SUCCESS_CHANGED_SINCE_1_5: &[(&str, &str)] = &[
    (
        "cpufreq",
        "1.5 fails on a CPU without scaling_available_governors (the fixture tree has one)",
    ),
    (
        "thermal_zone",
        "1.5 fails on a zone without policy (the fixture tree has one)",
    ),
    (
        "pressure",
        "1.9 reads /proc/pressure/irq too and, on a kernel without it, reports no data \
         (success 0) after writing cpu, io and memory",
    ),
];

/// Gauges that move between two reads a second apart, and how far: (family prefix,
/// relative, absolute, why).
const MOVING: &[(&str, f64, f64, &str)] = &[
    ("node_memory_", 0.05, 128.0 * 1048576.0, "memory use moves"),
    ("node_load", 0.25, 1.0, "the load average moves"),
    (
        "node_procs_",
        0.0,
        32.0,
        "a snapshot of the run queue of a machine other tests share",
    ),
    (
        "node_netstat_Tcp_CurrEstab",
        0.2,
        32.0,
        "connections open and close",
    ),
    ("node_time_seconds", 0.0, 5.0, "the clock"),
    (
        "node_timex_",
        0.05,
        1000.0,
        "the kernel's clock discipline moves",
    ),
    (
        "node_filefd_allocated",
        0.05,
        512.0,
        "files are opened and closed",
    ),
    ("node_sockstat_", 0.1, 64.0, "sockets are opened and closed"),
    (
        "node_nf_conntrack_entries",
        0.1,
        64.0,
        "connections come and go",
    ),
    (
        "node_entropy_available_bits",
        0.0,
        4096.0,
        "the entropy pool moves",
    ),
    ("node_vmstat_nr_", 0.05, 32768.0, "page counts move"),
    (
        "node_filesystem_free_bytes",
        0.01,
        256.0 * 1048576.0,
        "this machine's disks are in use",
    ),
    (
        "node_filesystem_avail_bytes",
        0.01,
        256.0 * 1048576.0,
        "this machine's disks are in use",
    ),
    (
        "node_filesystem_files_free",
        0.01,
        65536.0,
        "this machine's disks are in use",
    ),
    (
        "node_cpu_scaling_frequency_hertz",
        0.5,
        0.0,
        "CPU clocks move",
    ),
    ("node_cpu_frequency_hertz", 0.5, 0.0, "CPU clocks move"),
    (
        "node_network_carrier_changes_total",
        0.0,
        4.0,
        "other tests' veths come and go",
    ),
    (
        "node_hwmon_",
        0.1,
        5.0,
        "sensors move (temperatures, fans, voltages, power)",
    ),
    (
        "node_power_supply_",
        0.05,
        1.0,
        "batteries charge and drain",
    ),
    ("node_disk_io_now", 0.0, 16.0, "I/Os in flight"),
    ("node_softnet_backlog_len", 0.0, 64.0, "packets waiting"),
    (
        "node_udp_queues",
        0.5,
        65536.0,
        "bytes waiting in UDP sockets",
    ),
    ("node_arp_entries", 0.2, 8.0, "neighbours come and go"),
    ("node_thermal_zone_temp", 0.0, 5.0, "temperatures move"),
];

/// Families whose values are each exporter's own, not the machine's.
fn own_values(family: &str) -> bool {
    family.starts_with("process_") || family == "node_scrape_collector_duration_seconds"
}

/// What node_exporter writes about itself and vigia-host names its own way.
fn not_compared(family: &str) -> bool {
    family.starts_with("go_")
        || family.starts_with("promhttp_")
        || family == "node_exporter_build_info"
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Version {
    V1_5,
    V1_9,
}

fn node_exporter_1_5() -> PathBuf {
    PathBuf::from(require_tool(
        "prometheus-node-exporter",
        "prometheus-node-exporter",
    ))
}

/// Trixie's node_exporter 1.9, fetched (once, cached) by `scripts/fetch-tools.sh`.
fn node_exporter_1_9() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(repo.join("scripts/fetch-tools.sh"))
        .arg("node-exporter")
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/fetch-tools.sh");
    assert!(
        out.status.success(),
        "scripts/fetch-tools.sh node-exporter failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = repo.join(".cache/stack/root/usr/bin/prometheus-node-exporter");
    assert!(bin.exists(), "{} missing after fetch", bin.display());
    bin
}

fn start_node_exporter(bin: &Path, version: Version, args: &[String]) -> Running {
    let addr = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--web.listen-address={addr}"))
        // Debian's package turns systemd on and points textfile at its directory:
        // upstream's defaults are off and none.
        .arg("--no-collector.systemd")
        .arg(format!(
            "--collector.filesystem.mount-points-exclude={MOUNT_POINTS_EXCLUDE}"
        ))
        .arg(format!(
            "--collector.diskstats.device-exclude={DISKSTATS_EXCLUDE}"
        ));
    if version == Version::V1_5 {
        // Debian's 1.5 leaves out `lo`; upstream leaves out nothing.
        cmd.arg("--collector.netdev.device-exclude=");
    }
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    let child = cmd.spawn().expect("start node_exporter");
    let mut run = Running { child, addr };
    wait_until_serving(&mut run, Duration::from_secs(15));
    run
}

fn start_vigia(args: &[String]) -> Running {
    let mut all: Vec<&str> = vec![
        // vigia-host's own collectors write no node_ family: off, so that the
        // node_scrape_collector_* label sets are node_exporter's.
        "--no-collector.cgroups",
        "--no-collector.inventory",
        "--no-collector.energy",
        "--no-collector.anomaly",
    ];
    all.extend(args.iter().map(String::as_str));
    Launch {
        args: &all,
        ..Launch::default()
    }
    .start()
}

fn listed<'a, T>(list: &'a [(&'a str, T)], family: &str) -> Option<&'a T> {
    list.iter()
        .find(|(prefix, _)| family.starts_with(prefix))
        .map(|(_, v)| v)
}

fn changed_since_1_5(family: &str) -> bool {
    listed(CHANGED_SINCE_1_5, family).is_some()
}

/// vigia-host's series of one family as the given node_exporter would write them.
fn as_written_by(s: &Scrape, family: &str, version: Version) -> BTreeMap<LabelSet, f64> {
    let mut out = BTreeMap::new();
    for (mut labels, v) in s.family(family) {
        if version == Version::V1_5 {
            for (prefix, label, _) in LABELS_NEW_IN_1_9 {
                if family.starts_with(prefix) {
                    labels.remove(*label);
                }
            }
        }
        out.insert(labels, v);
    }
    out
}

fn families(s: &Scrape) -> BTreeSet<String> {
    let mut f: BTreeSet<String> = s.series.keys().map(|(n, _)| n.clone()).collect();
    f.extend(s.meta.keys().cloned());
    f.retain(|n| !not_compared(n) && (n.starts_with("node_") || n.starts_with("process_")));
    f
}

/// vigia-host's and one node_exporter's interleaved scrapes (v1, n1, v2, n2); returns
/// what disagrees.
fn compare(v: [&Scrape; 2], n: [&Scrape; 2], version: Version) -> Vec<String> {
    let mut failures = Vec::new();
    let ours = families(v[0]);
    let theirs = families(n[0]);
    for family in theirs.difference(&ours) {
        failures.push(format!(
            "{family}: node_exporter {version:?} writes it, vigia-host does not"
        ));
    }
    for family in ours.intersection(&theirs) {
        let (a, b) = (&v[0].meta.get(family), &n[0].meta.get(family));
        let (a, b) = (
            a.cloned().unwrap_or_default(),
            b.cloned().unwrap_or_default(),
        );
        if a.kind != b.kind {
            failures.push(format!(
                "{family}: TYPE {:?}, {version:?} {:?}",
                a.kind, b.kind
            ));
        }
        if a.help != b.help && !(version == Version::V1_5 && changed_since_1_5(family)) {
            failures.push(format!(
                "{family}: HELP {:?}, {version:?} {:?}",
                a.help, b.help
            ));
        }
        failures.extend(compare_series(family, v, n, version, b.kind.as_deref()));
    }
    failures
}

fn compare_series(
    family: &str,
    v: [&Scrape; 2],
    n: [&Scrape; 2],
    version: Version,
    kind: Option<&str>,
) -> Vec<String> {
    let mut failures = Vec::new();
    if version == Version::V1_5 && changed_since_1_5(family) {
        return failures;
    }
    let (v1, v2) = (
        as_written_by(v[0], family, version),
        as_written_by(v[1], family, version),
    );
    let (mut n1, mut n2) = (n[0].family(family), n[1].family(family));
    if version == Version::V1_5 && family == "node_scrape_collector_success" {
        for (collector, _) in SUCCESS_CHANGED_SINCE_1_5 {
            n1.retain(|l, _| l.get("collector").map(String::as_str) != Some(*collector));
            n2.retain(|l, _| l.get("collector").map(String::as_str) != Some(*collector));
        }
    }
    // Per-collector families: 1.5 runs fewer collectors than 1.9 (and vigia-host).
    let per_collector = family.starts_with("node_scrape_collector_");
    let ours: BTreeSet<&LabelSet> = v1.keys().collect();
    let theirs: BTreeSet<&LabelSet> = n1.keys().collect();
    let label_sets_agree = if per_collector && version == Version::V1_5 {
        theirs.is_subset(&ours)
    } else {
        ours == theirs
    };
    if !label_sets_agree {
        let only_ours: Vec<_> = ours.difference(&theirs).take(4).collect();
        let only_theirs: Vec<_> = theirs.difference(&ours).take(4).collect();
        failures.push(format!(
            "{family}: label sets differ from {version:?}'s\n  only vigia-host: {only_ours:?}\n  only node_exporter: {only_theirs:?}"
        ));
        return failures;
    }
    if own_values(family) {
        return failures;
    }
    let moving = MOVING.iter().find(|(p, ..)| family.starts_with(p));
    for (labels, nb1) in &n1 {
        let (Some(va1), Some(va2), Some(nb2)) = (v1.get(labels), v2.get(labels), n2.get(labels))
        else {
            failures.push(format!(
                "{family}{labels:?}: series vanished between readings"
            ));
            continue;
        };
        // Float rounding: node_exporter multiplies by 0.001 where vigia-host divides.
        let eps = 1e-9 * nb1.abs().max(1.0);
        if kind == Some("counter") {
            // /proc/stat's idle and iowait may step back by a tick.
            let tick = if family == "node_cpu_seconds_total" {
                0.05
            } else {
                0.0
            };
            let eps = eps + tick;
            if !(*va1 <= nb1 + eps && *nb1 <= va2 + eps && *va2 <= nb2 + eps) {
                failures.push(format!(
                    "{family}{labels:?}: out of order: vigia {va1}, node_exporter {nb1}, vigia {va2}, node_exporter {nb2}"
                ));
            }
            continue;
        }
        let (lo, hi) = (va1.min(*va2), va1.max(*va2));
        let tol = match moving {
            Some((_, rel, abs, _)) => (rel * hi.abs().max(nb1.abs())).max(*abs),
            None => 0.0,
        } + eps;
        let within = (nb1.is_nan() && va1.is_nan()) || (*nb1 >= lo - tol && *nb1 <= hi + tol);
        if !within {
            failures.push(format!(
                "{family}{labels:?}: node_exporter {version:?} {nb1}, vigia {va1} then {va2} (tolerance {tol})"
            ));
        }
    }
    failures
}

/// Scrapes vigia-host and both node_exporters interleaved, `pause` apart, and compares;
/// retries when a machine shared with other tests changes under it (an interface or
/// a mount coming or going between two reads must persist over three attempts).
fn agree(vigia: &Running, n15: &Running, n19: &Running, pause: Duration, attempts: usize) {
    let mut seen = Vec::new();
    for attempt in 0..attempts {
        let v1 = Scrape::fetch(vigia.addr);
        let a1 = Scrape::fetch(n15.addr);
        let b1 = Scrape::fetch(n19.addr);
        std::thread::sleep(pause);
        let v2 = Scrape::fetch(vigia.addr);
        let a2 = Scrape::fetch(n15.addr);
        let b2 = Scrape::fetch(n19.addr);
        let mut failures = compare([&v1, &v2], [&b1, &b2], Version::V1_9);
        failures.extend(compare([&v1, &v2], [&a1, &a2], Version::V1_5));
        // Every family vigia-host writes is node_exporter's (1.9's, or 1.5's where 1.9
        // writes a fixed list and 1.5 every field: meminfo).
        let known: BTreeSet<String> = families(&a1).union(&families(&b1)).cloned().collect();
        for family in families(&v1).difference(&known) {
            failures.push(format!(
                "{family}: vigia-host writes it, no node_exporter does"
            ));
        }
        if attempt == 0 {
            sanity(&v1, &v2);
        }
        if failures.is_empty() {
            return;
        }
        eprintln!("attempt {attempt} disagreed:\n{}", failures.join("\n"));
        seen.push(failures.join("\n"));
    }
    panic!(
        "vigia-host and node_exporter disagree:\n{}",
        seen.join("\n--- next attempt ---\n")
    );
}

/// The comparison passes trivially if nothing is read: some families must be there.
fn sanity(v1: &Scrape, _v2: &Scrape) {
    for family in [
        "node_cpu_seconds_total",
        "node_memory_MemTotal_bytes",
        "node_network_receive_bytes_total",
        "node_filesystem_size_bytes",
        "node_netstat_Tcp_ActiveOpens",
        "node_vmstat_pgfault",
        "node_scrape_collector_success",
        "process_resident_memory_bytes",
    ] {
        assert!(
            !v1.family(family).is_empty(),
            "vigia-host wrote no {family}"
        );
    }
}

#[test]
fn this_machine_matches_node_exporter_1_5_and_1_9() {
    let n19 = node_exporter_1_9();
    let n15 = node_exporter_1_5();
    let flags = vec!["--collector.textfile.directory=".to_string()];
    let node19 = start_node_exporter(&n19, Version::V1_9, &flags);
    let node15 = start_node_exporter(&n15, Version::V1_5, &flags);
    let vigia = start_vigia(&[]);
    agree(&vigia, &node15, &node19, Duration::from_secs(1), 3);
    // CPU time moved between the two readings: the counters' order check had work.
    let a = Scrape::fetch(vigia.addr);
    std::thread::sleep(Duration::from_millis(500));
    let b = Scrape::fetch(vigia.addr);
    let busy: f64 = b.family("node_cpu_seconds_total").values().sum::<f64>()
        - a.family("node_cpu_seconds_total").values().sum::<f64>();
    assert!(
        busy > 0.5,
        "CPU time advanced only {busy}s in 0.5s on all CPUs"
    );
}

#[test]
fn fixture_tree_matches_node_exporter_1_5_and_1_9() {
    let n19 = node_exporter_1_9();
    let n15 = node_exporter_1_5();
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path();
    common::unpack_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-tree.txt"),
        tree,
    );
    let t = tree.display();
    let mut flags = vec![
        format!("--path.procfs={t}/proc"),
        format!("--path.sysfs={t}/sys"),
        format!("--path.rootfs={t}"),
        format!("--path.udev.data={t}/udev/data"),
        format!("--collector.textfile.directory={t}/textfile"),
        // Netlink would read this machine's interfaces, not the tree's.
        "--no-collector.netdev.netlink".to_string(),
    ];
    let node15 = start_node_exporter(&n15, Version::V1_5, &flags);
    flags.push("--no-collector.arp.netlink".to_string());
    let node19 = start_node_exporter(&n19, Version::V1_9, &flags);
    let vigia = start_vigia(&flags);
    agree(&vigia, &node15, &node19, Duration::from_millis(100), 1);
    // Each listed 1.9-only family is one the tree makes 1.9 write.
    let v = Scrape::fetch(vigia.addr);
    let b = Scrape::fetch(node19.addr);
    let a = Scrape::fetch(node15.addr);
    for (prefix, why) in ONLY_IN_1_9 {
        let in_19 = families(&b).iter().any(|f| f.starts_with(prefix));
        let in_15 = families(&a).iter().any(|f| f.starts_with(prefix));
        assert!(
            in_19 && !in_15,
            "{prefix} ({why}): in 1.9 {in_19}, in 1.5 {in_15}"
        );
    }
    for (prefix, label, why) in LABELS_NEW_IN_1_9 {
        let has = |s: &Scrape| {
            families(s)
                .iter()
                .filter(|f| f.starts_with(prefix))
                .any(|f| s.family(f).keys().any(|l| l.contains_key(*label)))
        };
        assert!(has(&b) && !has(&a), "{prefix} {label} ({why})");
    }
    // The tree reaches every collector: each succeeds, as in 1.9, but the one it makes
    // fail on purpose (a mount whose statfs fails is an error of its own).
    let failed: Vec<_> = v
        .family("node_scrape_collector_success")
        .into_iter()
        .filter(|(_, ok)| *ok != 1.0)
        .map(|(l, _)| l["collector"].clone())
        .collect();
    assert!(
        failed.is_empty(),
        "collectors failed on the fixture tree: {failed:?}"
    );
}
