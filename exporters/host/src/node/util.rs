//! What node_exporter's collectors share: reading small procfs and sysfs files, listing
//! directories, and the include/exclude name filters behind their `--collector.*` flags.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;
use regex::Regex;

/// A whole file, with its path in the error.
pub fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// A sysfs attribute: the file without surrounding white space, as the procfs
/// library's `SysReadFile`.
pub fn read_attr(path: &Path) -> io::Result<String> {
    let s = std::fs::read_to_string(path)?;
    Ok(s.trim().to_string())
}

/// At most 128 bytes, trimmed, as the procfs library's `SysReadFile` reads sysfs
/// attributes (one read(2): some drivers misbehave on longer reads).
pub fn sys_read(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = [0u8; 128];
    let n = f.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
}

/// An attribute that parses as a number; `None` when absent or not a number.
pub fn attr_f64(dir: &Path, name: &str) -> Option<f64> {
    read_attr(&dir.join(name)).ok()?.trim().parse().ok()
}

/// An unsigned integer attribute (`u64`, as the procfs library parses them).
pub fn attr_u64(dir: &Path, name: &str) -> Option<u64> {
    read_attr(&dir.join(name)).ok()?.trim().parse().ok()
}

/// Names in a directory, sorted; hidden entries included, as `ioutil.ReadDir` lists them.
pub fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Entries of `dir` whose names start with `prefix`, sorted, as full paths.
pub fn glob_prefix(dir: &Path, prefix: &str) -> io::Result<Vec<(String, PathBuf)>> {
    Ok(list(dir)?
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .map(|n| {
            let p = dir.join(&n);
            (n, p)
        })
        .collect())
}

/// A file that is not there or not ours to read: what node_exporter's collectors take
/// for "nothing to report here" rather than a failure.
pub fn absent_or_denied(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
    )
}

pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::NotFound)
    })
}

/// Go's `strconv.ParseInt(s, 0, 64)`, which the procfs library uses for sysfs values:
/// `0x` hex, `0o`/leading `0` octal, `0b` binary, else decimal; `None` when it does not
/// parse.
pub fn go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) =
        if let Some(d) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, d)
        } else if let Some(d) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (2, d)
        } else if let Some(d) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (8, d)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let v = i128::from_str_radix(&digits, radix).ok()?;
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// Go's `strconv.ParseUint(s, 0, 64)` (the procfs library's `PUInt64`): as [`go_int`]
/// without a sign, up to `u64::MAX`.
pub fn go_uint(s: &str) -> Option<u64> {
    if s.starts_with(['+', '-']) {
        return None;
    }
    let (radix, digits) = if let Some(d) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, d)
    } else if let Some(d) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        (2, d)
    } else if let Some(d) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        (8, d)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    u64::from_str_radix(&digits, radix).ok()
}

/// node_exporter's device filter: a name is ignored when it matches `exclude`, or when an
/// `include` is set and it does not match it. Empty patterns are no filter.
#[derive(Debug, Clone, Default)]
pub struct NameFilter {
    exclude: Option<Regex>,
    include: Option<Regex>,
}

impl NameFilter {
    /// Patterns were checked when the configuration was validated; one that still does
    /// not compile here is no filter.
    pub fn new(exclude: Option<&str>, include: Option<&str>) -> Self {
        let compile =
            |p: Option<&str>| p.filter(|p| !p.is_empty()).and_then(|p| Regex::new(p).ok());
        Self {
            exclude: compile(exclude),
            include: compile(include),
        }
    }

    /// Only an exclusion (`ignored-devices` style flags).
    pub fn excluding(pattern: &str) -> Self {
        Self::new(Some(pattern), None)
    }

    pub fn ignored(&self, name: &str) -> bool {
        self.exclude.as_ref().is_some_and(|r| r.is_match(name))
            || self.include.as_ref().is_some_and(|r| !r.is_match(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_formats() {
        let f = NameFilter::new(Some("^lo$"), None);
        assert!(f.ignored("lo") && !f.ignored("eth0"));
        let f = NameFilter::new(None, Some("^eth"));
        assert!(!f.ignored("eth0") && f.ignored("lo"));
        assert!(!NameFilter::new(Some(""), Some("")).ignored("x"));
        assert_eq!(go_int("0x1003"), Some(4099));
        assert_eq!(go_int("-1"), Some(-1));
        assert_eq!(go_int("010"), Some(8));
        assert_eq!(go_int("0"), Some(0));
        assert_eq!(go_int("x"), None);
        assert_eq!(go_uint("0xffffffffffffffff"), Some(u64::MAX));
        assert_eq!(go_uint("-1"), None);
    }
}
