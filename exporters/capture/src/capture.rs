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
use crate::parse::{summarize, Datalink, PacketSummary, BAD_TIMESTAMP};

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
    /// How the seconds of a packet's timestamp are to be read.
    seconds: Seconds,
}

/// How libpcap's `tv_sec` of a packet maps to a time.
///
/// A pcap file stores seconds as an unsigned 32-bit number (times up to 2106), but
/// libpcap up to 1.10 reads it as a signed one: every packet after 2038-01-19 03:14:07
/// UTC arrives with a negative `tv_sec`. For such inputs a negative value in the 32-bit
/// range is read back as the unsigned number the file holds. pcapng files (64-bit
/// times) and live captures give `tv_sec` as it is, and a negative one (a pcapng time
/// offset before 1970) cannot be represented: the packet is counted as having a bad
/// timestamp and analysed at the time of the packet before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seconds {
    Unsigned32,
    Signed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SavefileFormat {
    Pcap,
    Pcapng,
}

/// Block type of a pcapng section header, and the file's first four bytes.
const PCAPNG_SECTION_HEADER: u32 = 0x0A0D_0D0A;

/// Reads the file's magic number and, for pcapng, the link types of the interfaces
/// described before its first packet. libpcap (and so tcpdump) reads a pcapng file only
/// while every interface has the first one's link type, and stops at the first packet of
/// any other: such a file is refused here, before anything runs, with what to do about it.
fn savefile_format(path: &std::path::Path) -> Result<SavefileFormat, vigia_kit::ConfigError> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| {
        vigia_kit::ConfigError::new("file", format!("cannot read {}: {e}", path.display()))
    };
    // A FIFO (or any file that is not a regular one) is read once: peeking at it would
    // take its first bytes from libpcap. Its format is left to libpcap, as stdin's is.
    if !std::fs::metadata(path).map_err(unreadable)?.is_file() {
        return Ok(SavefileFormat::Pcap);
    }
    let mut file = std::io::BufReader::new(std::fs::File::open(path).map_err(unreadable)?);
    let mut magic = [0u8; 4];
    if file.read_exact(&mut magic).is_err() || u32::from_le_bytes(magic) != PCAPNG_SECTION_HEADER {
        // Not pcapng (or too short to be anything): libpcap says what it is not.
        return Ok(SavefileFormat::Pcap);
    }
    let types = pcapng_leading_link_types(&mut file, magic).map_err(unreadable)?;
    if let Some((first, other)) = types
        .iter()
        .find(|(_, t)| *t != types[0].1)
        .map(|other| (types[0], *other))
    {
        return Err(vigia_kit::ConfigError::new(
            "file",
            format!(
                "{} is a pcapng file whose interfaces have different link types (interface {} is {}, \
                 interface {} is {}); libpcap, which reads capture files here as it does for tcpdump, \
                 reads only files whose interfaces share one link type. Split it per interface \
                 (`tshark -r FILE -Y 'frame.interface_id == {}' -w PART.pcapng`) and replay each part",
                path.display(),
                first.0,
                linktype_name(first.1),
                other.0,
                linktype_name(other.1),
                other.0,
            ),
        ));
    }
    Ok(SavefileFormat::Pcapng)
}

fn linktype_name(linktype: u16) -> String {
    let lt = pcap::Linktype(i32::from(linktype));
    match lt.get_name() {
        Ok(name) => format!("{name} ({linktype})"),
        Err(_) => format!("link type {linktype}"),
    }
}

/// `(interface index, link type)` of the interface description blocks that come before
/// the first packet block (or the end of the file), over every section; at most 64 KiB
/// of blocks are looked at. A malformed header ends the walk: libpcap reports it.
fn pcapng_leading_link_types(
    file: &mut impl std::io::Read,
    magic: [u8; 4],
) -> std::io::Result<Vec<(usize, u16)>> {
    let mut types = Vec::new();
    let mut head = [0u8; 12];
    head[..4].copy_from_slice(&magic);
    let mut have = 4;
    let mut big_endian = false;
    let mut interfaces_in_section = 0usize;
    let mut walked = 0usize;
    loop {
        if read_full(file, &mut head[have..8])? < 8 - have {
            return Ok(types);
        }
        have = 0;
        let block_type = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if block_type == PCAPNG_SECTION_HEADER {
            // The byte-order magic follows the length; it says how to read the length.
            if read_full(file, &mut head[8..12])? < 4 {
                return Ok(types);
            }
            big_endian = head[8..12] == [0x1a, 0x2b, 0x3c, 0x4d];
            interfaces_in_section = 0;
        }
        let word = |b: &[u8]| {
            let b = [b[0], b[1], b[2], b[3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let block_type = word(&head[..4]);
        let length = word(&head[4..8]) as usize;
        let consumed = if block_type == PCAPNG_SECTION_HEADER {
            12
        } else {
            8
        };
        if length < 12 || length % 4 != 0 || length > 1 << 16 {
            return Ok(types);
        }
        match block_type {
            // Interface description: link type (16 bits), reserved, snaplen, options.
            1 => {
                let mut body = [0u8; 2];
                if read_full(file, &mut body)? < 2 {
                    return Ok(types);
                }
                let linktype = if big_endian {
                    u16::from_be_bytes(body)
                } else {
                    u16::from_le_bytes(body)
                };
                types.push((interfaces_in_section, linktype));
                interfaces_in_section += 1;
                skip(file, length - 8 - 2)?;
            }
            // Packet blocks (obsolete, simple, enhanced): the interfaces are known.
            2 | 3 | 6 => return Ok(types),
            _ => skip(file, length - consumed)?,
        }
        walked += length;
        if walked > 1 << 16 {
            return Ok(types);
        }
    }
}

fn read_full(file: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

fn skip(file: &mut impl std::io::Read, n: usize) -> std::io::Result<()> {
    std::io::copy(
        &mut std::io::Read::take(&mut *file, n as u64),
        &mut std::io::sink(),
    )
    .map(|_| ())
}

/// Opens the configured input, applies the filter, checks the datalink. Errors name the
/// field and, for a permission problem, the capabilities that are missing.
pub fn open(config: &Config) -> Result<CaptureSource, vigia_kit::ConfigError> {
    use vigia_kit::ConfigError;
    let (handle, field, description, seconds) = match config.input() {
        Input::File(path) => {
            let format = savefile_format(&path)?;
            let cap = Capture::from_file(&path).map_err(|e| {
                ConfigError::new(
                    "file",
                    format!("cannot read {} as pcap or pcapng: {e}", path.display()),
                )
            })?;
            unlock_savefile_stream(&cap);
            let seconds = match format {
                SavefileFormat::Pcapng => Seconds::Signed,
                SavefileFormat::Pcap => Seconds::Unsigned32,
            };
            (
                Handle::File(cap),
                "file",
                format!("file {}", path.display()),
                seconds,
            )
        }
        Input::Stdin => {
            if stdin_is_terminal() {
                return Err(ConfigError::new(
                    "file",
                    "`-` reads a capture from standard input, which is a terminal: pipe one in \
                     (`tcpdump -w - ... | vigia-capture --capture.file -`)",
                ));
            }
            // libpcap reads its standard input for the name `-`, as `tcpdump -r -` does.
            let cap = Capture::from_file("-").map_err(|e| {
                ConfigError::new(
                    "file",
                    format!("cannot read standard input as pcap or pcapng: {e}"),
                )
            })?;
            unlock_savefile_stream(&cap);
            // The format cannot be peeked at on a pipe; a negative 32-bit time can only
            // come from a pcap file's unsigned seconds (see `Seconds`).
            (
                Handle::File(cap),
                "file",
                "standard input".to_string(),
                Seconds::Unsigned32,
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
                Seconds::Signed,
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
        seconds,
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
    let seconds = source.seconds;
    let thread = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || match source.handle {
            Handle::File(cap) => run_file(cap, datalink, seconds, tx, stop),
            Handle::Live(cap) => run_live(cap, datalink, tx, counters, stop),
        })?;
    Ok((rx, thread))
}

/// A packet's time in nanoseconds since the Unix epoch, or [`BAD_TIMESTAMP`] when it
/// cannot be represented (before 1970, or after the year 2554).
fn ts_ns(h: &pcap::PacketHeader, seconds: Seconds) -> u64 {
    let sec: i64 = h.ts.tv_sec;
    let sec = match seconds {
        Seconds::Unsigned32 if (i64::from(i32::MIN)..0).contains(&sec) => {
            u64::from(sec as i32 as u32)
        }
        _ => match u64::try_from(sec) {
            Ok(s) => s,
            Err(_) => return BAD_TIMESTAMP,
        },
    };
    // libpcap hands over microseconds; a corrupt record may say more than a second's worth.
    let usec = u64::try_from(h.ts.tv_usec).unwrap_or(0).min(999_999);
    match sec.checked_mul(1_000_000_000) {
        Some(ns) if ns < BAD_TIMESTAMP - 1_000_000_000 => ns + usec * 1000,
        _ => BAD_TIMESTAMP,
    }
}

fn run_file(
    mut cap: Capture<Offline>,
    datalink: Datalink,
    seconds: Seconds,
    tx: SyncSender<Event>,
    stop: Arc<AtomicBool>,
) {
    let mut batch = Vec::with_capacity(FILE_BATCH);
    loop {
        match cap.next_packet() {
            Ok(p) => {
                batch.push(summarize(
                    datalink,
                    p.data,
                    p.header.len,
                    ts_ns(p.header, seconds),
                ));
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
                let _ = tx.send(Event::Failed(read_error(&e.to_string())));
                return;
            }
        }
    }
}

/// What a failed read says, with the reason when libpcap's own words do not give it.
fn read_error(message: &str) -> String {
    if message.contains("different from the type of the first interface") {
        // An interface described after the first packets (a pcapng file made by merging
        // captures, or written while interfaces were added).
        format!(
            "reading the capture failed: {message}: this pcapng capture has interfaces of \
             different link types, which libpcap (as tcpdump) reads only up to the first packet \
             of the second type; split it per interface (`tshark -r FILE -Y \
             'frame.interface_id == N' -w PART.pcapng`) and replay each part"
        )
    } else {
        format!("reading the capture file failed: {message}")
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
            batch.push(summarize(
                datalink,
                p.data,
                p.header.len,
                ts_ns(p.header, Seconds::Signed),
            ));
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

fn stdin_is_terminal() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { isatty(0) == 1 }
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

// Four calls the pcap crate does not wrap, from the libraries it already links (libpcap
// and the C library): no binding crate for them.
extern "C" {
    fn isatty(fd: c_int) -> c_int;
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
