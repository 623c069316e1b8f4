//! What runs on the host and who is on it (seed 004's agent): logged-in users from utmp,
//! processes by state, the processes using the most CPU (aggregated by command name, top N
//! only) and OS details. Exposed to Prometheus at scrape time and pushed to InfluxDB as a
//! snapshot every `inventory.interval`, so an operator can ask what a host looked like at
//! a given date.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::influx::Point;
use vigia_kit::{Source, SourceError};

use crate::collectors::Setup;
use crate::metrics::{gauge, Sample};
use crate::node::os;

/// Size of one `struct utmp` record on Linux (x86_64 and every other glibc target with a
/// 32-bit `ut_tv`).
pub const UTMP_RECORD: usize = 384;
/// `ut_type` of a logged-in user's session.
const USER_PROCESS: i16 = 7;

/// One login session from utmp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub line: String,
    pub host: String,
    pub login_time: i64,
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Parses utmp records; a trailing partial record is ignored.
pub fn parse_utmp(data: &[u8]) -> Vec<Session> {
    data.chunks_exact(UTMP_RECORD)
        .filter(|r| i16::from_ne_bytes([r[0], r[1]]) == USER_PROCESS)
        .map(|r| Session {
            line: c_string(&r[8..40]),
            user: c_string(&r[44..76]),
            host: c_string(&r[76..332]),
            login_time: i64::from(i32::from_ne_bytes([r[340], r[341], r[342], r[343]])),
        })
        .filter(|s| !s.user.is_empty())
        .collect()
}

/// Reads the host's utmp: `/run/utmp` first, because `/var/run` is usually an absolute
/// symlink to `/run` that would resolve inside our own container, not under `rootfs`.
pub fn read_sessions(rootfs: &Path) -> std::io::Result<Vec<Session>> {
    let run = rootfs.join("run/utmp");
    let var = rootfs.join("var/run/utmp");
    let data = std::fs::read(&run).or_else(|_| std::fs::read(var))?;
    Ok(parse_utmp(&data))
}

/// Process state letters of /proc/<pid>/stat, as label values.
pub fn state_name(c: char) -> &'static str {
    match c {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk_sleep",
        'Z' => "zombie",
        'T' => "stopped",
        't' => "tracing_stop",
        'I' => "idle",
        'X' | 'x' => "dead",
        _ => "other",
    }
}

/// One process's state, command name and CPU ticks.
#[derive(Debug, Clone)]
struct ProcSample {
    key: (i32, u64),
    comm: String,
    state: char,
    ticks: u64,
    rss_pages: u64,
}

fn read_processes(procfs_root: &Path) -> anyhow::Result<Vec<ProcSample>> {
    let iter = procfs::process::all_processes_with_root(procfs_root)
        .map_err(|e| anyhow::anyhow!("listing processes under {}: {e}", procfs_root.display()))?;
    // Processes exit while we read: each one that vanished is simply skipped.
    Ok(iter
        .filter_map(Result::ok)
        .filter_map(|p| p.stat().ok())
        .map(|s| ProcSample {
            key: (s.pid, s.starttime),
            comm: s.comm,
            state: s.state,
            ticks: s.utime + s.stime,
            rss_pages: s.rss,
        })
        .collect())
}

/// Processes with one command name, and the CPU they used over the last interval.
#[derive(Debug, Clone, PartialEq)]
pub struct TopProcess {
    pub name: String,
    /// CPU seconds per second (1.0 = one core fully busy).
    pub cpu_ratio: f64,
    pub count: u64,
    pub rss_bytes: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub sessions: Vec<Session>,
    /// Process count by state name.
    pub states: BTreeMap<&'static str, u64>,
    pub processes: u64,
    /// Top processes by CPU, largest first; empty on the first reading.
    pub top: Vec<TopProcess>,
}

impl Snapshot {
    /// Sessions per user, for at most `max_users` users (most sessions first).
    pub fn sessions_by_user(&self, max_users: usize) -> Vec<(String, u64)> {
        let mut by_user: HashMap<&str, u64> = HashMap::new();
        for s in &self.sessions {
            *by_user.entry(s.user.as_str()).or_default() += 1;
        }
        let mut v: Vec<(String, u64)> = by_user
            .into_iter()
            .map(|(u, n)| (u.to_string(), n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(max_users);
        v
    }
}

/// CPU ticks by (pid, start time): a pid reused by a new process is a new key.
type TicksByProcess = HashMap<(i32, u64), u64>;

/// Takes snapshots; CPU use is the difference from the previous snapshot.
pub struct Sampler {
    procfs_root: PathBuf,
    rootfs: PathBuf,
    top_n: usize,
    hz: f64,
    page_size: f64,
    previous: Option<(Instant, TicksByProcess)>,
}

impl Sampler {
    pub fn new(procfs_root: PathBuf, rootfs: PathBuf, top_n: usize) -> Self {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Self {
            procfs_root,
            rootfs,
            top_n,
            hz: crate::node::stat::user_hz(),
            page_size: if page > 0 { page as f64 } else { 4096.0 },
            previous: None,
        }
    }

    pub fn snapshot(&mut self) -> anyhow::Result<Snapshot> {
        let procs = read_processes(&self.procfs_root)?;
        let sessions = match read_sessions(&self.rootfs) {
            Ok(s) => s,
            // No utmp (minimal images, containers): nobody is logged in through it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "reading utmp under {}: {e}",
                    self.rootfs.display()
                ))
            }
        };
        let mut states: BTreeMap<&'static str, u64> = BTreeMap::new();
        for p in &procs {
            *states.entry(state_name(p.state)).or_default() += 1;
        }
        let now = Instant::now();
        let ticks: TicksByProcess = procs.iter().map(|p| (p.key, p.ticks)).collect();
        let mut top = Vec::new();
        if let Some((then, before)) = &self.previous {
            let secs = now.duration_since(*then).as_secs_f64();
            if secs > 0.0 {
                let mut by_name: HashMap<&str, TopProcess> = HashMap::new();
                for p in &procs {
                    // A process born since the last reading counts from zero.
                    let used = p
                        .ticks
                        .saturating_sub(before.get(&p.key).copied().unwrap_or(0));
                    let e = by_name
                        .entry(p.comm.as_str())
                        .or_insert_with(|| TopProcess {
                            name: p.comm.clone(),
                            cpu_ratio: 0.0,
                            count: 0,
                            rss_bytes: 0.0,
                        });
                    e.cpu_ratio += used as f64 / self.hz / secs;
                    e.count += 1;
                    e.rss_bytes += p.rss_pages as f64 * self.page_size;
                }
                // Names that used no CPU in the interval are not a "top" of anything.
                top = by_name
                    .into_values()
                    .filter(|t| t.cpu_ratio > 0.0)
                    .collect();
                top.sort_by(|a, b| {
                    b.cpu_ratio
                        .total_cmp(&a.cpu_ratio)
                        .then(a.name.cmp(&b.name))
                });
                top.truncate(self.top_n);
            }
        }
        self.previous = Some((now, ticks));
        Ok(Snapshot {
            sessions,
            states,
            processes: procs.len() as u64,
            top,
        })
    }
}

/// The collector table's constructor.
pub fn register(s: &mut Setup<'_>) {
    s.metrics.register_source(InventoryCollector {
        sampler: Mutex::new(Sampler::new(
            s.config.procfs_root.clone(),
            s.config.rootfs.clone(),
            s.config.inventory.top_processes,
        )),
        max_users: s.config.inventory.max_users,
    });
}

/// Prometheus side: a fresh snapshot per scrape (CPU use since the previous scrape).
pub struct InventoryCollector {
    pub sampler: Mutex<Sampler>,
    pub max_users: usize,
}

impl Source for InventoryCollector {
    fn name(&self) -> &'static str {
        "inventory"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let snap = self
            .sampler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .snapshot()?;
        gauge(
            enc,
            "vigia_host_users_logged_in",
            "Login sessions in the host's utmp.",
            &[Sample::bare(snap.sessions.len() as f64)],
        )?;
        let by_user = snap.sessions_by_user(self.max_users);
        let users: Vec<Sample<'_>> = by_user
            .iter()
            .map(|(u, n)| Sample::new(vec![("user", u.as_str())], *n as f64))
            .collect();
        gauge(
            enc,
            "vigia_host_user_sessions",
            "Login sessions per user (the users with most sessions, bounded by inventory.max_users).",
            &users,
        )?;
        let states: Vec<Sample<'_>> = snap
            .states
            .iter()
            .map(|(s, n)| Sample::new(vec![("state", *s)], *n as f64))
            .collect();
        gauge(enc, "vigia_host_processes", "Processes by state.", &states)?;
        let top: Vec<Sample<'_>> = snap
            .top
            .iter()
            .map(|t| Sample::new(vec![("name", t.name.as_str())], t.cpu_ratio))
            .collect();
        gauge(
            enc,
            "vigia_host_top_process_cpu_ratio",
            "CPU seconds per second since the previous scrape of the processes using most CPU, summed by command name (top inventory.top_processes names).",
            &top,
        )?;
        Ok(())
    }
}

/// The InfluxDB rows of one snapshot, all at `at`, tagged with `host`.
pub fn points(
    host: &str,
    at: SystemTime,
    snap: &Snapshot,
    rootfs: &Path,
    max_users: usize,
) -> Vec<Point> {
    let mut inv = Point::new("vigia_host_inventory")
        .tag("host", host)
        .field("users_logged_in", snap.sessions.len() as i64)
        .field("processes", snap.processes as i64)
        .timestamp(at);
    for (state, n) in &snap.states {
        inv = inv.field(format!("processes_{state}"), *n as i64);
    }
    if let Ok(u) = crate::node::uname::uname() {
        inv = inv
            .field("kernel_release", u.release)
            .field("kernel_version", u.version)
            .field("machine", u.machine)
            .field("nodename", u.nodename);
    }
    if let Ok(release) = os::read_os_release(rootfs) {
        for (key, field) in [
            ("ID", "os_id"),
            ("NAME", "os_name"),
            ("PRETTY_NAME", "os_pretty_name"),
            ("VERSION_ID", "os_version_id"),
        ] {
            if let Some(v) = release.get(key) {
                inv = inv.field(field, v.as_str());
            }
        }
    }
    let mut out = vec![inv];
    for (user, sessions) in snap.sessions_by_user(max_users) {
        let of_user: Vec<&Session> = snap.sessions.iter().filter(|s| s.user == user).collect();
        let lines: Vec<&str> = of_user.iter().map(|s| s.line.as_str()).collect();
        let from: Vec<&str> = of_user
            .iter()
            .map(|s| s.host.as_str())
            .filter(|h| !h.is_empty())
            .collect();
        out.push(
            Point::new("vigia_host_users")
                .tag("host", host)
                .tag("user", user.as_str())
                .field("sessions", sessions as i64)
                .field("lines", lines.join(","))
                .field("from", from.join(","))
                .timestamp(at),
        );
    }
    for (rank, t) in snap.top.iter().enumerate() {
        out.push(
            Point::new("vigia_host_processes")
                .tag("host", host)
                .tag("name", t.name.as_str())
                .field("rank", rank as i64 + 1)
                .field("cpu_ratio", t.cpu_ratio)
                .field("count", t.count as i64)
                .field("rss_bytes", t.rss_bytes)
                .timestamp(at),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: i16, user: &str, line: &str, host: &str, time: i32) -> Vec<u8> {
        let mut r = vec![0u8; UTMP_RECORD];
        r[0..2].copy_from_slice(&kind.to_ne_bytes());
        r[8..8 + line.len()].copy_from_slice(line.as_bytes());
        r[44..44 + user.len()].copy_from_slice(user.as_bytes());
        r[76..76 + host.len()].copy_from_slice(host.as_bytes());
        r[340..344].copy_from_slice(&time.to_ne_bytes());
        r
    }

    #[test]
    fn utmp_user_sessions_only() {
        let mut data = record(2, "reboot", "~", "", 1);
        data.extend(record(7, "ana", "pts/0", "198.18.0.7", 1_700_000_000));
        data.extend(record(8, "", "pts/1", "", 5));
        data.extend(record(7, "luis", "tty1", "", 1_700_000_100));
        data.extend(record(7, "ana", "pts/2", "", 1_700_000_200));
        data.extend([1, 2, 3]);
        let s = parse_utmp(&data);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].user, "ana");
        assert_eq!(s[0].host, "198.18.0.7");
        assert_eq!(s[1].line, "tty1");
        assert_eq!(s[0].login_time, 1_700_000_000);
        let snap = Snapshot {
            sessions: s,
            states: BTreeMap::new(),
            processes: 0,
            top: Vec::new(),
        };
        assert_eq!(
            snap.sessions_by_user(10),
            vec![("ana".to_string(), 2), ("luis".to_string(), 1)]
        );
        assert_eq!(snap.sessions_by_user(1).len(), 1);
    }

    #[test]
    fn this_hosts_processes_are_counted() {
        let mut s = Sampler::new(PathBuf::from("/proc"), PathBuf::from("/"), 3);
        let first = s.snapshot().unwrap();
        assert!(first.processes > 1);
        assert!(first.top.is_empty());
        assert_eq!(first.states.values().sum::<u64>(), first.processes);
        let second = s.snapshot().unwrap();
        assert!(second.top.len() <= 3);
    }
}
