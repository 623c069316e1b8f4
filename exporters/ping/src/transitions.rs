//! The transition log (seed 001's `server_status.txt`, structured): one JSON line per
//! status change, in a file that is rotated before it grows past `max_bytes`, keeping
//! `path.1` (newest) .. `path.<keep>`, so a flapping target cannot fill the disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::config::TransitionLogConfig;
use crate::status::Transition;

/// One line of the log.
#[derive(Debug, Serialize)]
pub struct TransitionRecord<'a> {
    /// RFC 3339, UTC.
    pub time: String,
    pub target: &'a str,
    pub address: &'a str,
    pub from: &'static str,
    pub to: &'static str,
    /// For `to: unreachable`: the down target it is behind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind: Option<&'a str>,
    pub last_rtt_seconds: Option<f64>,
    pub loss_ratio: Option<f64>,
    /// The kind of probe (`icmp`, `tcp`, `http`, `dns`).
    pub probe: &'static str,
    /// tcp, http, dns: why the probe that caused the change failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl<'a> TransitionRecord<'a> {
    pub fn new(
        at: SystemTime,
        target: &'a str,
        address: &'a str,
        t: Transition,
        behind: Option<&'a str>,
        last_rtt_seconds: Option<f64>,
        loss_ratio: Option<f64>,
    ) -> Self {
        Self {
            time: humantime::format_rfc3339_millis(at).to_string(),
            target,
            address,
            from: t.from.as_str(),
            to: t.to.as_str(),
            behind,
            last_rtt_seconds,
            loss_ratio,
            probe: "icmp",
            error: None,
        }
    }
}

#[derive(Debug)]
pub struct TransitionLog {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    size: u64,
}

impl TransitionLog {
    /// Opens (appends to) the log; an error here is a startup error naming the path.
    pub fn open(config: &TransitionLogConfig) -> io::Result<Self> {
        let file = open_append(&config.path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: config.path.clone(),
            max_bytes: config.max_bytes,
            keep: config.keep,
            file,
            size,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as a line, rotating first when the line would not fit.
    pub fn append(&mut self, record: &TransitionRecord<'_>) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        // One write call per line, so a reader never sees half a record.
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        ignore_missing(std::fs::remove_file(numbered(self.keep)))?;
        for n in (1..self.keep).rev() {
            ignore_missing(std::fs::rename(numbered(n), numbered(n + 1)))?;
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;

    #[test]
    fn lines_are_json_and_rotation_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("transitions.jsonl");
        let mut log = TransitionLog::open(&TransitionLogConfig {
            path: path.clone(),
            max_bytes: 1024,
            keep: 2,
        })
        .unwrap();
        let t = Transition {
            from: Status::Ok,
            to: Status::Down,
        };
        for i in 0..40 {
            let name = format!("target-{i:02}");
            let r = TransitionRecord::new(
                SystemTime::UNIX_EPOCH,
                &name,
                "127.0.0.1",
                t,
                None,
                Some(0.001),
                Some(1.0),
            );
            log.append(&r).unwrap();
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let last: serde_json::Value =
            serde_json::from_str(current.lines().last().unwrap()).unwrap();
        assert_eq!(last["target"], "target-39");
        assert_eq!(last["from"], "ok");
        assert_eq!(last["to"], "down");
        assert_eq!(last["time"], "1970-01-01T00:00:00.000Z");
        assert!(last.get("behind").is_none(), "{last}");
        let unreachable = TransitionRecord::new(
            SystemTime::UNIX_EPOCH,
            "dslam-7",
            "198.18.0.7",
            Transition {
                from: Status::Ok,
                to: Status::Unreachable,
            },
            Some("router-north"),
            None,
            Some(1.0),
        );
        let line = serde_json::to_value(&unreachable).unwrap();
        assert_eq!(line["to"], "unreachable");
        assert_eq!(line["behind"], "router-north");
        for p in [path.clone(), dir.path().join("transitions.jsonl.1")] {
            let len = std::fs::metadata(&p).unwrap().len();
            assert!(len <= 1024 && len > 0, "{} is {len} bytes", p.display());
        }
        assert!(dir.path().join("transitions.jsonl.2").exists());
        assert!(!dir.path().join("transitions.jsonl.3").exists());
        // Every line of every kept file is whole, and the files hold consecutive records.
        let older = std::fs::read_to_string(dir.path().join("transitions.jsonl.1")).unwrap();
        let first_current: serde_json::Value =
            serde_json::from_str(current.lines().next().unwrap()).unwrap();
        let last_older: serde_json::Value =
            serde_json::from_str(older.lines().last().unwrap()).unwrap();
        let n = |v: &serde_json::Value| v["target"].as_str().unwrap()[7..].parse::<u32>().unwrap();
        assert_eq!(n(&last_older) + 1, n(&first_current));
    }
}
