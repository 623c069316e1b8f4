//! Maintenance windows: the file Alertmanager's silences are made from
//! (`alertmanager/maintenance.txt` in the stack, by `alertmanager/maintenance.sh`), read
//! here too so that the status board and /metrics show a device or a site in
//! maintenance while its alerts are silenced.
//!
//! One window per line, fields separated by spaces or tabs:
//!
//! ```text
//! # start                  end                    what              reason
//! 2026-12-05T02:00:00Z     2026-12-05T04:00:00Z   site=centro       fibre works, ticket 4711
//! 2026-12-06T22:00:00-03:00 2026-12-07T01:00:00-03:00 target=olt-norte firmware upgrade
//! ```
//!
//! Times are RFC 3339 with seconds and `Z` or an offset (what Alertmanager accepts);
//! `what` is `site=<name>` or `target=<name>` (a value with spaces in double quotes); the
//! reason is the rest of the line and may not be empty (it becomes the silence's
//! comment). A line starting with `#` is a comment. The shell side parses exactly the
//! same grammar; `tests/stack/validate.sh` holds the two to the same file.

use std::path::Path;
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use vigia_kit::ConfigError;

use crate::board::MaintenanceView;
use crate::status::unix_seconds;

/// What a window covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every target whose `site` label is this.
    Site(String),
    /// The target of this name.
    Target(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub start: SystemTime,
    pub end: SystemTime,
    pub scope: Scope,
    pub reason: String,
}

impl Window {
    fn covers(&self, name: &str, site: Option<&str>, now: SystemTime) -> bool {
        let in_scope = match &self.scope {
            Scope::Site(s) => site == Some(s.as_str()),
            Scope::Target(t) => t == name,
        };
        in_scope && self.start <= now && now < self.end
    }

    pub fn view(&self) -> MaintenanceView {
        MaintenanceView {
            until_seconds: unix_seconds(self.end),
            reason: self.reason.clone(),
            scope: match self.scope {
                Scope::Site(_) => "site",
                Scope::Target(_) => "target",
            },
        }
    }
}

/// The windows in force, replaced whole when the file changes.
#[derive(Debug, Default)]
pub struct Maintenance {
    windows: RwLock<Vec<Window>>,
}

impl Maintenance {
    pub fn replace(&self, windows: Vec<Window>) {
        *self.windows.write().unwrap_or_else(|p| p.into_inner()) = windows;
    }

    /// The window covering the target now; of several, the one that ends last.
    pub fn active(&self, name: &str, site: Option<&str>, now: SystemTime) -> Option<Window> {
        self.windows
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|w| w.covers(name, site, now))
            .max_by_key(|w| w.end)
            .cloned()
    }
}

/// Reads and parses the maintenance file.
pub fn read(path: &Path) -> Result<Vec<Window>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            "maintenance_file",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    parse(&text, &path.display().to_string())
}

pub fn parse(text: &str, file: &str) -> Result<Vec<Window>, ConfigError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = |field: &str| format!("maintenance_file {file} line {}: {field}", i + 1);
        let rest = line.trim_start();
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        let (start_text, rest) = next_field(rest);
        let (end_text, rest) = next_field(rest);
        let start = parse_time(start_text).map_err(|m| ConfigError::new(at("start"), m))?;
        let end = parse_time(end_text).map_err(|m| ConfigError::new(at("end"), m))?;
        if end <= start {
            return Err(ConfigError::new(
                at("end"),
                format!("{end_text} is not after the start, {start_text}"),
            ));
        }
        let (scope, rest) = parse_scope(rest).map_err(|m| ConfigError::new(at("what"), m))?;
        let reason = rest.trim();
        if reason.is_empty() {
            return Err(ConfigError::new(
                at("reason"),
                "missing: say why (it becomes the silence's comment)",
            ));
        }
        if reason.chars().any(char::is_control) {
            return Err(ConfigError::new(
                at("reason"),
                "must not contain control characters",
            ));
        }
        out.push(Window {
            start,
            end,
            scope,
            reason: reason.to_string(),
        });
    }
    Ok(out)
}

/// The first whitespace-separated field and what follows it.
fn next_field(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(at) => (&s[..at], &s[at..]),
        None => (s, ""),
    }
}

/// `site=<name>` or `target=<name>`, the name bare or in double quotes.
fn parse_scope(s: &str) -> Result<(Scope, &str), String> {
    let s = s.trim_start();
    let (key, rest) = s
        .split_once('=')
        .ok_or_else(|| "expected site=<name> or target=<name>".to_string())?;
    let (value, rest) = match rest.strip_prefix('"') {
        Some(quoted) => {
            let end = quoted
                .find('"')
                .ok_or_else(|| "unterminated double quote".to_string())?;
            (&quoted[..end], &quoted[end + 1..])
        }
        // A bare name ends at the first blank, right after `=` too (`site= x` has none).
        None => rest.split_at(rest.find(char::is_whitespace).unwrap_or(rest.len())),
    };
    if value.is_empty() {
        return Err(format!("{key}= needs a name"));
    }
    if value.chars().any(char::is_control) || value.contains(['"', '\\']) {
        return Err(format!("{value:?} is not a valid name"));
    }
    let scope = match key {
        "site" => Scope::Site(value.to_string()),
        "target" => Scope::Target(value.to_string()),
        other => {
            return Err(format!(
                "{other:?}: a window is for a site=<name> or a target=<name>"
            ))
        }
    };
    Ok((scope, rest))
}

/// RFC 3339 with seconds and `Z` or `±hh:mm`, as Go's time.RFC3339 (amtool) reads it.
pub fn parse_time(s: &str) -> Result<SystemTime, String> {
    let bad =
        || format!("{s:?} is not a time like 2026-12-05T02:00:00Z or 2026-12-05T02:00:00-03:00");
    let shape_ok = s.len() >= 20
        && s.is_ascii()
        && s.as_bytes()[10] == b'T'
        && s[..19].bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    // humantime takes a leap second (:60); amtool does not.
    if !shape_ok || &s[17..19] > "59" {
        return Err(bad());
    }
    let (local, zone) = s.split_at(19);
    let offset = match zone {
        "Z" => 0i64,
        z if z.len() == 6
            && (z.starts_with('+') || z.starts_with('-'))
            && z.as_bytes()[3] == b':' =>
        {
            let hours: i64 = z[1..3].parse().map_err(|_| bad())?;
            let minutes: i64 = z[4..6].parse().map_err(|_| bad())?;
            if hours > 23 || minutes > 59 {
                return Err(bad());
            }
            let sign = if z.starts_with('-') { -1 } else { 1 };
            sign * (hours * 3600 + minutes * 60)
        }
        _ => return Err(bad()),
    };
    let utc_as_if = humantime::parse_rfc3339(&format!("{local}Z")).map_err(|_| bad())?;
    // Local time = UTC + offset, so UTC = local - offset.
    let shift = Duration::from_secs(offset.unsigned_abs());
    let t = if offset >= 0 {
        utc_as_if.checked_sub(shift)
    } else {
        utc_as_if.checked_add(shift)
    };
    t.ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn windows_for_sites_and_targets() {
        let text = "# planned works\n\
                    2026-12-05T02:00:00Z 2026-12-05T04:00:00Z site=centro fibre works, ticket #4711\n\
                    \t2026-12-06T22:00:00-03:00\t2026-12-07T01:00:00-03:00  target=olt-norte   firmware 2.1\n\
                    2026-12-08T00:00:00+01:30 2026-12-08T01:00:00Z site=\"San Martín\" power\n";
        let w = parse(text, "m.txt").unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].scope, Scope::Site("centro".into()));
        assert_eq!(w[0].reason, "fibre works, ticket #4711");
        assert_eq!(w[1].start, at("2026-12-07T01:00:00Z"));
        assert_eq!(w[1].end, at("2026-12-07T04:00:00Z"));
        assert_eq!(w[1].scope, Scope::Target("olt-norte".into()));
        assert_eq!(w[1].reason, "firmware 2.1");
        assert_eq!(w[2].start, at("2026-12-07T22:30:00Z"));
        assert_eq!(w[2].scope, Scope::Site("San Martín".into()));

        let m = Maintenance::default();
        m.replace(w);
        let inside = at("2026-12-05T03:00:00Z");
        assert!(m.active("dslam-1", Some("centro"), inside).is_some());
        assert!(m.active("dslam-1", Some("norte"), inside).is_none());
        // The end is not inside the window.
        assert!(m
            .active("x", Some("centro"), at("2026-12-05T04:00:00Z"))
            .is_none());
        let fw = m
            .active("olt-norte", None, at("2026-12-07T02:00:00Z"))
            .unwrap();
        assert_eq!(fw.view().scope, "target");
        assert_eq!(
            fw.view().until_seconds,
            unix_seconds(at("2026-12-07T04:00:00Z"))
        );
    }

    #[test]
    fn bad_lines_name_the_line_and_the_field() {
        for (line, field, says) in [
            (
                "2026-12-05 02:00 2026-12-05T04:00:00Z site=a x",
                "start",
                "not a time",
            ),
            (
                "2026-12-05T02:00Z 2026-12-05T04:00:00Z site=a x",
                "start",
                "not a time",
            ),
            (
                "2026-12-05T02:00:00Z 2026-13-05T04:00:00Z site=a x",
                "end",
                "not a time",
            ),
            (
                "2026-12-05T02:00:00Z 2026-12-05T04:00:00+25:00 site=a x",
                "end",
                "not a time",
            ),
            (
                "2026-12-05T04:00:00Z 2026-12-05T02:00:00Z site=a x",
                "end",
                "not after",
            ),
            (
                "2026-12-05T02:00:00Z 2026-12-05T04:00:00Z host=a x",
                "what",
                "site=<name>",
            ),
            (
                "2026-12-05T02:00:00Z 2026-12-05T04:00:00Z centro works",
                "what",
                "expected",
            ),
            (
                "2026-12-05T02:00:00Z 2026-12-05T04:00:00Z site= x",
                "what",
                "needs a name",
            ),
            (
                "2026-12-05T02:00:00Z 2026-12-05T04:00:00Z site=\"a b x",
                "what",
                "unterminated",
            ),
            (
                "2026-12-05T02:00:00Z 2026-12-05T04:00:00Z site=a",
                "reason",
                "missing",
            ),
            (
                "2026-12-05T02:00:00Z 2026-12-05T04:00:00Z site=a   ",
                "reason",
                "missing",
            ),
        ] {
            let e = parse(&format!("# ok\n{line}\n"), "m.txt").expect_err(line);
            assert_eq!(
                e.path,
                format!("maintenance_file m.txt line 2: {field}"),
                "{line}"
            );
            assert!(e.message.contains(says), "{line}: {e}");
        }
    }
}
