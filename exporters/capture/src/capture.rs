//! libpcap on its own thread: live from an interface or offline from a pcap/pcapng file.
//! Frames are summarised here ([`crate::parse`]) and handed to the analyser in batches
//! through a bounded queue. A live capture never waits for the analyser: a batch that
//! does not fit is dropped and counted (`stage="queue"`), as the kernel's own drops are
//! (`stage="kernel"`). A file replay waits instead, so a replay is complete and
//! deterministic.
//!
//! A live handle is non-blocking and the thread waits in poll(2) itself. On Linux,
//! libpcap's blocking read does not return when its timeout expires on a quiet
//! interface: it polls again until a packet passes the filter. A partial batch held
//! across such a read would stay in this thread, uncounted, until the next matching
//! packet; waiting ourselves bounds that to [`LIVE_FLUSH`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::ffi::c_void;
use std::os::raw::{c_int, c_short, c_ulong};
use std::os::unix::io::{AsRawFd, RawFd};

use pcap::{Active, Capture, Offline};
use prometheus_client::metrics::counter::Counter;

use crate::config::{Config, Input};
use crate::parse::{summarize, Datalink, PacketSummary};

/// Packets per live batch: large enough that the queue costs nothing per packet, small
/// enough that a live batch is handed over within milliseconds.
pub const BATCH: usize = 256;

/// Packets per batch of a file replay, where no latency matters: each hand-over may wake
/// the analyser, and on one core every wake-up is a pair of context switches.
const FILE_BATCH: usize = 2048;

/// How long a live packet may wait in a partial batch.
const LIVE_FLUSH: Duration = Duration::from_millis(20);

/// Longest a quiet live capture waits for the kernel before it looks at `stop` and the
/// kernel's drop counters again.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// What the capture thread sends.
#[derive(Debug)]
pub enum Event {
    Packets(Vec<PacketSummary>),
    /// The file ended (offline) or the capture stopped.
    End,
    /// The capture failed (a truncated or corrupt file, an interface that went away).
    Failed(String),
}

enum Handle {
    Live(Capture<Active>),
    File(Capture<Offline>),
}

/// An opened capture, before its thread starts.
pub struct CaptureSource {
    handle: Handle,
    /// Wakes a live capture blocked in libpcap at shutdown (a quiet interface may never
    /// return from a read otherwise).
    pub breaker: Option<pcap::BreakLoop>,
    pub datalink: Datalink,
    pub description: String,
}

/// Opens the configured input, applies the filter, checks the datalink. Errors name the
/// field and, for a permission problem, the capabilities that are missing.
pub fn open(config: &Config) -> Result<CaptureSource, vigia_kit::ConfigError> {
    use vigia_kit::ConfigError;
    let (handle, field, description) = match config.input() {
        Input::File(path) => {
            let cap = Capture::from_file(&path).map_err(|e| {
                ConfigError::new(
                    "file",
                    format!("cannot read {} as pcap or pcapng: {e}", path.display()),
                )
            })?;
            unlock_savefile_stream(&cap);
            (
                Handle::File(cap),
                "file",
                format!("file {}", path.display()),
            )
        }
        Input::Live(interface) => {
            let cap = Capture::from_device(interface.as_str())
                .and_then(|c| {
                    c.snaplen(config.snaplen as i32)
                        .buffer_size(config.buffer_size as i32)
                        .immediate_mode(config.immediate_mode)
                        .promisc(config.promiscuous)
                        .timeout(config.read_timeout.as_millis().clamp(1, 10_000) as i32)
                        .open()
                })
                .and_then(|c| c.setnonblock())
                .map_err(|e| live_open_error(&interface, &e.to_string()))?;
            (
                Handle::Live(cap),
                "interface",
                format!("interface {interface}"),
            )
        }
    };
    let linktype = match &handle {
        Handle::Live(c) => c.get_datalink(),
        Handle::File(c) => c.get_datalink(),
    };
    let datalink = Datalink::from_linktype(linktype.0).ok_or_else(|| {
        ConfigError::new(
            field,
            format!(
                "datalink {} ({}) is not supported: Ethernet, Linux cooked v1/v2, raw IP and BSD loopback are",
                linktype.0,
                linktype.get_name().unwrap_or_else(|_| "unknown".into())
            ),
        )
    })?;
    let mut handle = handle;
    let breaker = match &mut handle {
        Handle::Live(c) => Some(c.breakloop_handle()),
        Handle::File(_) => None,
    };
    if let Some(filter) = &config.filter {
        let result = match &mut handle {
            Handle::Live(c) => c.filter(filter, true),
            Handle::File(c) => c.filter(filter, true),
        };
        result.map_err(|e| ConfigError::new("filter", format!("{filter:?}: {e}")))?;
    }
    Ok(CaptureSource {
        handle,
        breaker,
        datalink,
        description,
    })
}

/// libpcap reads a savefile with two `fread` calls per packet, and once a process has
/// more than one thread the C library takes the stream's lock in each (an atomic
/// read-modify-write, more than a tenth of a replay's time per packet). The stream
/// belongs to this handle alone and the handle to the capture thread alone: the lock
/// guards nothing.
fn unlock_savefile_stream(cap: &Capture<Offline>) {
    // SAFETY: `pcap_file` only reads the handle, which is valid while `cap` lives; the
    // stream it returns is libpcap's own, used by no one else. `__fsetlocking` changes
    // a flag of that stream.
    unsafe {
        let stream = pcap_file(cap.as_ptr().cast());
        if !stream.is_null() {
            __fsetlocking(stream, FSETLOCKING_BYCALLER);
        }
    }
}

fn live_open_error(interface: &str, message: &str) -> vigia_kit::ConfigError {
    let lower = message.to_ascii_lowercase();
    let text = if lower.contains("permission") || lower.contains("not permitted") {
        format!(
            "cannot capture on {interface}: {message}. Live capture needs the NET_RAW and NET_ADMIN capabilities \
             (run as root, or `setcap cap_net_raw,cap_net_admin=eip` on the binary, or `cap_add: [NET_RAW, NET_ADMIN]` \
             in compose) and host networking to see the host's interfaces"
        )
    } else {
        format!("cannot capture on {interface}: {message}")
    };
    vigia_kit::ConfigError::new("interface", text)
}

/// Counters the capture thread owns.
#[derive(Clone, Default)]
pub struct CaptureCounters {
    pub kernel_dropped: Counter,
    pub queue_dropped: Counter,
}

/// Starts the capture thread. `stop` ends a live capture within the read timeout.
pub fn spawn(
    source: CaptureSource,
    queue_packets: usize,
    counters: CaptureCounters,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(Receiver<Event>, JoinHandle<()>)> {
    let batch = match &source.handle {
        Handle::File(_) => FILE_BATCH,
        Handle::Live(_) => BATCH,
    };
    let (tx, rx) = sync_channel((queue_packets / batch).max(1));
    let datalink = source.datalink;
    let thread = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || match source.handle {
            Handle::File(cap) => run_file(cap, datalink, tx, stop),
            Handle::Live(cap) => run_live(cap, datalink, tx, counters, stop),
        })?;
    Ok((rx, thread))
}

fn ts_ns(h: &pcap::PacketHeader) -> u64 {
    let sec = u64::try_from(h.ts.tv_sec).unwrap_or(0);
    let usec = u64::try_from(h.ts.tv_usec).unwrap_or(0).min(999_999);
    sec.saturating_mul(1_000_000_000)
        .saturating_add(usec * 1000)
}

fn run_file(
    mut cap: Capture<Offline>,
    datalink: Datalink,
    tx: SyncSender<Event>,
    stop: Arc<AtomicBool>,
) {
    let mut batch = Vec::with_capacity(FILE_BATCH);
    loop {
        match cap.next_packet() {
            Ok(p) => {
                batch.push(summarize(datalink, p.data, p.header.len, ts_ns(p.header)));
                if batch.len() == FILE_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(FILE_BATCH));
                    if tx.send(Event::Packets(full)).is_err() || stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
            }
            Err(pcap::Error::NoMorePackets) => {
                if !batch.is_empty() {
                    let _ = tx.send(Event::Packets(batch));
                }
                let _ = tx.send(Event::End);
                return;
            }
            Err(e) => {
                if !batch.is_empty() {
                    let _ = tx.send(Event::Packets(batch));
                }
                let _ = tx.send(Event::Failed(format!(
                    "reading the capture file failed: {e}"
                )));
                return;
            }
        }
    }
}

fn run_live(
    mut cap: Capture<Active>,
    datalink: Datalink,
    tx: SyncSender<Event>,
    counters: CaptureCounters,
    stop: Arc<AtomicBool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut batch_started = Instant::now();
    let mut last_stats = Instant::now();
    let mut kernel_seen: u64 = 0;
    let send = |batch: Vec<PacketSummary>| -> bool {
        let n = batch.len() as u64;
        match tx.try_send(Event::Packets(batch)) {
            Ok(()) => {
                tracing::debug!(packets = n, "batch handed over");
                true
            }
            Err(TrySendError::Full(_)) => {
                counters.queue_dropped.inc_by(n);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    };
    let fd = cap.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        // pcap_dispatch hands over the packets of a ring block in one call, as tcpdump
        // reads, instead of one call per packet. Non-blocking: it returns what the ring
        // holds, possibly nothing.
        let room = BATCH - batch.len();
        let was_empty = batch.is_empty();
        let result = cap.dispatch(Some(room), |p| {
            batch.push(summarize(datalink, p.data, p.header.len, ts_ns(p.header)));
        });
        let read = match result {
            Ok(n) => {
                if was_empty && n > 0 {
                    batch_started = Instant::now();
                }
                n
            }
            // pcap_breakloop (shutdown) ends a dispatch with an error: not a failure.
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(e) => {
                if !batch.is_empty() {
                    send(std::mem::take(&mut batch));
                }
                let _ = tx.send(Event::Failed(format!("live capture failed: {e}")));
                return;
            }
        };
        if !batch.is_empty() && (batch.len() == BATCH || batch_started.elapsed() >= LIVE_FLUSH) {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if !send(full) {
                return;
            }
        }
        if last_stats.elapsed() >= Duration::from_secs(1) {
            last_stats = Instant::now();
            if let Ok(stats) = cap.stats() {
                // libpcap's counters are 32-bit and wrap; add the difference.
                let total = u64::from(stats.dropped) + u64::from(stats.if_dropped);
                let delta = (total as u32).wrapping_sub(kernel_seen as u32);
                counters.kernel_dropped.inc_by(u64::from(delta));
                kernel_seen = total;
            }
        }
        if read < room {
            // The ring is empty: wait for the kernel, no longer than the partial batch
            // may still wait.
            let wait = if batch.is_empty() {
                IDLE_WAIT
            } else {
                LIVE_FLUSH.saturating_sub(batch_started.elapsed())
            };
            wait_readable(fd, wait);
        }
    }
    if let Ok(stats) = cap.stats() {
        let total = u64::from(stats.dropped) + u64::from(stats.if_dropped);
        counters
            .kernel_dropped
            .inc_by(u64::from((total as u32).wrapping_sub(kernel_seen as u32)));
    }
    if !batch.is_empty() {
        let _ = tx.send(Event::Packets(batch));
    }
    let _ = tx.send(Event::End);
}

#[repr(C)]
struct PollFd {
    fd: c_int,
    events: c_short,
    revents: c_short,
}

const POLLIN: c_short = 0x001;

/// `<stdio_ext.h>`: the caller takes care of the stream's locking.
const FSETLOCKING_BYCALLER: c_int = 2;

// Three calls the pcap crate does not wrap, from the libraries it already links (libpcap
// and the C library): no binding crate for them.
extern "C" {
    fn poll(fds: *mut PollFd, nfds: c_ulong, timeout: c_int) -> c_int;
    fn pcap_file(p: *mut c_void) -> *mut c_void;
    fn __fsetlocking(stream: *mut c_void, kind: c_int) -> c_int;
}

/// Waits until `fd` is readable, or has an error to report, or `wait` has passed.
/// An error condition (an interface that went down) is left for the next read to
/// report; the full wait is slept first, so a persistent error bit (or a failing poll)
/// never turns the loop into a busy one.
fn wait_readable(fd: RawFd, wait: Duration) {
    let ms = wait.as_micros().div_ceil(1000).clamp(1, 10_000) as c_int;
    let mut pfd = PollFd {
        fd,
        events: POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    let ready = unsafe { poll(&mut pfd, 1, ms) };
    if ready < 0 || (ready > 0 && pfd.revents & POLLIN == 0) {
        std::thread::sleep(wait.max(Duration::from_millis(1)));
    }
}
