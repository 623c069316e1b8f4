//! Reads the kernel's TCP socket table from `<root>/net/tcp` and `<root>/net/tcp6`: the
//! fallback when netlink sock_diag is not available (some sandboxes filter netlink).
//!
//! The files are streamed through one reused buffer and parsed byte-wise: at 100,000
//! sockets they are 15 MB of text, which must not become 15 MB of RSS or a String per line.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::counts::ConnectionCounts;

const READ_BUFFER_LEN: usize = 64 * 1024;

/// A procfs reader rooted at `/proc`, or `/host/proc` in a container.
#[derive(Debug)]
pub struct ProcNet {
    root: PathBuf,
    buf: Vec<u8>,
}

impl ProcNet {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            buf: vec![0; READ_BUFFER_LEN],
        }
    }

    /// Counts every socket listed in `net/tcp` and `net/tcp6` into `counts`.
    pub fn read(&mut self, counts: &mut ConnectionCounts) -> anyhow::Result<()> {
        for (name, required) in [("net/tcp", true), ("net/tcp6", false)] {
            let path = self.root.join(name);
            let file = match File::open(&path) {
                Ok(f) => f,
                // A kernel without IPv6 has no tcp6 table: no IPv6 sockets to count.
                Err(e) if !required && e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
            };
            count_table(file, &mut self.buf, counts)
                .with_context(|| format!("cannot read {}", path.display()))?;
        }
        Ok(())
    }
}

/// Counts the sockets of one table, streamed from `reader` through `buf`. The first line
/// is the column header.
pub fn count_table<R: Read>(
    mut reader: R,
    buf: &mut [u8],
    counts: &mut ConnectionCounts,
) -> anyhow::Result<()> {
    let mut filled = 0;
    let mut line_no = 0usize;
    loop {
        let n = match reader.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            // The kernel ends every line with a newline; a tail without one is a line cut short.
            if filled > 0 {
                line_no += 1;
                if line_no > 1 {
                    count_line(&buf[..filled], line_no, counts)?;
                }
            }
            return Ok(());
        }
        filled += n;
        let mut start = 0;
        while let Some(end) = buf[start..filled].iter().position(|&b| b == b'\n') {
            line_no += 1;
            if line_no > 1 {
                count_line(&buf[start..start + end], line_no, counts)?;
            }
            start += end + 1;
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        if filled == buf.len() {
            bail!("line {} is longer than {} bytes", line_no + 1, buf.len());
        }
    }
}

/// Splits off the next space-separated field.
fn next_field<'a>(line: &mut &'a [u8]) -> Option<&'a [u8]> {
    let start = line.iter().position(|&b| b != b' ')?;
    let rest = &line[start..];
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    let (field, tail) = rest.split_at(end);
    *line = tail;
    Some(field)
}

fn hex(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let mut value = 0u32;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'A'..=b'F' => d - b'A' + 10,
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        value = value << 4 | u32::from(v);
    }
    Some(value)
}

/// The port of an `ADDRESS:PORT` field (address and port in hex).
fn endpoint_port(field: &[u8]) -> Option<u16> {
    let colon = field.iter().rposition(|&b| b == b':')?;
    let port = &field[colon + 1..];
    if colon == 0 || port.len() != 4 {
        return None;
    }
    hex(port).map(|p| p as u16)
}

/// Parses `sl: local remote st ...` and counts the socket. Blank lines are skipped.
fn count_line(line: &[u8], line_no: usize, counts: &mut ConnectionCounts) -> anyhow::Result<()> {
    let mut rest = line;
    let Some(slot) = next_field(&mut rest) else {
        return Ok(());
    };
    let parsed = (|| {
        if slot.last() != Some(&b':') {
            return None;
        }
        let local = endpoint_port(next_field(&mut rest)?)?;
        let remote = endpoint_port(next_field(&mut rest)?)?;
        let state = next_field(&mut rest)?;
        if state.len() != 2 {
            return None;
        }
        let state = hex(state)? as u8;
        Some((state, local, remote))
    })();
    match parsed {
        Some((state, local, remote)) => {
            counts.add(state, local, remote);
            Ok(())
        }
        None => bail!(
            "line {line_no} is not `sl: local_address rem_address st ...`: {:?}",
            String::from_utf8_lossy(&line[..line.len().min(120)])
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::{PortSlots, Side, TcpState};

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23045 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0016 0100007F:C738 01 00000000:00000000 00:00000000 00000000     0        0 41012 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C739 0100007F:01BB 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   3: 0100007F:0016 0100007F:C73A 08 00000000:00000000 00:00000000 00000000     0        0 41013 1 0000000000000000 20 4 30 10 -1
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23046 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:C740 00000000000000000000000001000000:01BB 01 00000000:00000000 00:00000000 00000000     0        0 41020 1 0000000000000000 20 4 30 10 -1
";

    fn counts() -> ConnectionCounts {
        ConnectionCounts::new(PortSlots::new(&[22, 443]))
    }

    /// Yields its bytes a few at a time, as a slow reader would, so lines straddle reads.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(self.0.len()).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn counts_ipv4_and_ipv6_tables() {
        let mut c = counts();
        let mut buf = vec![0; 4096];
        count_table(TCP.as_bytes(), &mut buf, &mut c).unwrap();
        count_table(TCP6.as_bytes(), &mut buf, &mut c).unwrap();
        assert_eq!(c.port(0, Side::Local, TcpState::Listen), 1);
        assert_eq!(c.port(0, Side::Local, TcpState::Established), 1);
        assert_eq!(c.port(0, Side::Local, TcpState::CloseWait), 1);
        assert_eq!(c.port(1, Side::Local, TcpState::Listen), 1);
        assert_eq!(c.port(1, Side::Remote, TcpState::TimeWait), 1);
        assert_eq!(c.port(1, Side::Remote, TcpState::Established), 1);
        assert_eq!(c.host(TcpState::Listen), 2);
        assert_eq!(c.host(TcpState::Established), 2);
    }

    #[test]
    fn lines_straddling_reads_and_small_buffers() {
        for step in [1, 3, 7, 64] {
            let mut c = counts();
            let mut buf = vec![0; 256];
            count_table(Trickle(TCP6.as_bytes(), step), &mut buf, &mut c).unwrap();
            assert_eq!(
                c.port(1, Side::Remote, TcpState::Established),
                1,
                "step {step}"
            );
            assert_eq!(c.host(TcpState::Listen), 1, "step {step}");
        }
        let mut buf = vec![0; 64];
        let e = count_table(TCP6.as_bytes(), &mut buf, &mut counts()).unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
    }

    #[test]
    fn header_only_and_empty_tables_count_nothing() {
        let mut c = counts();
        let mut buf = vec![0; 4096];
        count_table(&b""[..], &mut buf, &mut c).unwrap();
        count_table(TCP.lines().next().unwrap().as_bytes(), &mut buf, &mut c).unwrap();
        assert_eq!(c.host(TcpState::Listen), 0);
    }

    #[test]
    fn truncated_lines_are_errors_not_panics() {
        let line = TCP.lines().nth(2).unwrap();
        // Every cut that loses part of the state field or anything before it.
        let state_end = line.find(" 01 ").unwrap() + 3;
        for cut in 1..state_end {
            let text = format!("header\n{}\n", &line[..cut]);
            let mut buf = vec![0; 4096];
            let result = count_table(text.as_bytes(), &mut buf, &mut counts());
            let blank = line[..cut].trim().is_empty();
            assert_eq!(result.is_err(), !blank, "cut at {cut}: {:?}", &line[..cut]);
        }
        let mut c = counts();
        let text = format!("header\n{}", &line[..state_end]);
        count_table(text.as_bytes(), &mut vec![0; 4096], &mut c).unwrap();
        assert_eq!(c.port(0, Side::Local, TcpState::Established), 1);
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            "h\n 0: 0100007F:00G6 00000000:0000 0A\n",
            "h\n 0: 0100007F:0016 00000000:0000 0AB\n",
            "h\n 0 0100007F:0016 00000000:0000 0A\n",
            "h\n 0: :0016 00000000:0000 0A\n",
            "h\n 0: 0100007F0016 00000000:0000 0A\n",
            "h\n\u{00ff}\u{0000}\n",
        ] {
            let e = count_table(bad.as_bytes(), &mut vec![0; 4096], &mut counts()).unwrap_err();
            assert!(e.to_string().contains("line 2"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn reads_a_fixture_root_without_tcp6() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("net")).unwrap();
        std::fs::write(dir.path().join("net/tcp"), TCP).unwrap();
        let mut c = counts();
        ProcNet::new(dir.path()).read(&mut c).unwrap();
        assert_eq!(c.port(0, Side::Local, TcpState::Listen), 1);
        std::fs::remove_file(dir.path().join("net/tcp")).unwrap();
        let e = ProcNet::new(dir.path()).read(&mut counts()).unwrap_err();
        assert!(format!("{e:#}").contains("net/tcp"), "{e:#}");
    }
}
