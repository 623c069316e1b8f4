//! The exporter's own process, as the Prometheus client libraries expose it (`process_*`,
//! same names, HELP texts and units as client_golang's process collector), read from
//! `/proc/self` at scrape time. Register it with
//! `metrics.registry_mut().register_collector(Box::new(ProcessCollector::new()))`.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// What `/proc/self` says about this process; a field is `None` when its file did not read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub virtual_memory_bytes: Option<f64>,
    pub virtual_memory_max_bytes: Option<f64>,
    pub resident_memory_bytes: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub network_receive_bytes: Option<f64>,
    pub network_transmit_bytes: Option<f64>,
}

fn sysconf(name: libc::c_int, fallback: f64) -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let v = unsafe { libc::sysconf(name) };
    if v > 0 {
        v as f64
    } else {
        fallback
    }
}

/// `/proc/<pid>/stat` after the command name: (utime, stime, starttime ticks, vsize, rss pages).
fn parse_stat(text: &str) -> Option<(f64, f64, f64, f64, f64)> {
    let after = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_ascii_whitespace().collect();
    // Fields are numbered from 1 for the pid; `after` starts at field 3 (state).
    let n = |field: usize| f.get(field - 3)?.parse::<f64>().ok();
    Some((n(14)?, n(15)?, n(22)?, n(23)?, n(24)?))
}

/// A soft limit from `/proc/<pid>/limits` (`unlimited` as the largest u64, as client_golang).
fn parse_limit(text: &str, name: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let soft = line[name.len()..].split_ascii_whitespace().next()?;
    if soft == "unlimited" {
        return Some(u64::MAX as f64);
    }
    soft.parse().ok()
}

/// `IpExt: InOctets OutOctets` from `/proc/<pid>/net/netstat` (the process's network
/// namespace, which is what client_golang reports).
fn parse_ip_ext_octets(text: &str) -> Option<(f64, f64)> {
    let mut lines = text.lines().filter(|l| l.starts_with("IpExt:"));
    let names: Vec<&str> = lines.next()?.split_ascii_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_ascii_whitespace().collect();
    let get = |key: &str| {
        let i = names.iter().position(|n| *n == key)?;
        values.get(i)?.parse::<f64>().ok()
    };
    Some((get("InOctets")?, get("OutOctets")?))
}

fn boot_time() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

impl ProcessStats {
    /// Reads this process's figures.
    pub fn read() -> ProcessStats {
        let mut s = ProcessStats::default();
        let hz = sysconf(libc::_SC_CLK_TCK, 100.0);
        let page = sysconf(libc::_SC_PAGESIZE, 4096.0);
        if let Some((utime, stime, start, vsize, rss)) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .as_deref()
            .and_then(parse_stat)
        {
            s.cpu_seconds = Some((utime + stime) / hz);
            s.virtual_memory_bytes = Some(vsize);
            s.resident_memory_bytes = Some(rss * page);
            s.start_time_seconds = boot_time().map(|b| b + start / hz);
        }
        s.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64);
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            s.max_fds = parse_limit(&limits, "Max open files");
            s.virtual_memory_max_bytes = parse_limit(&limits, "Max address space");
        }
        if let Some((rx, tx)) = std::fs::read_to_string("/proc/self/net/netstat")
            .ok()
            .as_deref()
            .and_then(parse_ip_ext_octets)
        {
            s.network_receive_bytes = Some(rx);
            s.network_transmit_bytes = Some(tx);
        }
        s
    }
}

/// Writes `process_*` on every scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl ProcessCollector {
    pub fn new() -> Self {
        ProcessCollector
    }
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: Option<f64>) -> fmt::Result {
    match v {
        Some(v) => {
            ConstGauge::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
        }
        None => Ok(()),
    }
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: Option<f64>) -> fmt::Result {
    match v {
        Some(v) => ConstCounter::new(v).encode(enc.encode_descriptor(
            name,
            help,
            None,
            MetricType::Counter,
        )?),
        None => Ok(()),
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let s = ProcessStats::read();
        counter(
            &mut enc,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            s.cpu_seconds,
        )?;
        gauge(
            &mut enc,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            s.max_fds,
        )?;
        counter(
            &mut enc,
            "process_network_receive_bytes",
            "Number of bytes received by the process over the network.",
            s.network_receive_bytes,
        )?;
        counter(
            &mut enc,
            "process_network_transmit_bytes",
            "Number of bytes sent by the process over the network.",
            s.network_transmit_bytes,
        )?;
        gauge(
            &mut enc,
            "process_open_fds",
            "Number of open file descriptors.",
            s.open_fds,
        )?;
        gauge(
            &mut enc,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            s.resident_memory_bytes,
        )?;
        gauge(
            &mut enc,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            s.start_time_seconds,
        )?;
        gauge(
            &mut enc,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            s.virtual_memory_bytes,
        )?;
        gauge(
            &mut enc,
            "process_virtual_memory_max_bytes",
            "Maximum amount of virtual memory available in bytes.",
            s.virtual_memory_max_bytes,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_self_files() {
        let stat = "4242 (vigia host) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 125 0 0 20 0 3 0 9000 123456789 2048 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some((250.0, 125.0, 9000.0, 123456789.0, 2048.0))
        );
        assert_eq!(parse_stat("garbage"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
Max open files            1024                 524288               files\n\
Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(parse_limit(limits, "Max open files"), Some(1024.0));
        assert_eq!(
            parse_limit(limits, "Max address space"),
            Some(u64::MAX as f64)
        );
        let netstat =
            "TcpExt: A B\nTcpExt: 1 2\nIpExt: InNoRoutes InOctets OutOctets\nIpExt: 0 1000 2000\n";
        assert_eq!(parse_ip_ext_octets(netstat), Some((1000.0, 2000.0)));
    }

    #[test]
    fn reads_this_process() {
        let s = ProcessStats::read();
        assert!(s.resident_memory_bytes.unwrap() > 0.0);
        assert!(s.open_fds.unwrap() >= 3.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = s.start_time_seconds.unwrap();
        assert!(started <= now + 1.0 && started > now - 86400.0 * 365.0);
    }
}
