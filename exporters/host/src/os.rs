//! Who the host is: node_exporter's `uname`, `os` and `time` collectors.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use crate::metrics::{gauge, Sample};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uname {
    pub sysname: String,
    pub release: String,
    pub version: String,
    pub machine: String,
    pub nodename: String,
    pub domainname: String,
}

fn field(chars: &[libc::c_char]) -> String {
    // SAFETY: uname fills each field with a NUL-terminated string within its array; the
    // slice bounds the read should one ever lack the NUL (checked below).
    if !chars.contains(&0) {
        return String::new();
    }
    unsafe { CStr::from_ptr(chars.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

pub fn uname() -> anyhow::Result<Uname> {
    // SAFETY: `buf` is a plain C struct that uname fills in; read only on success.
    let mut buf: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut buf) } != 0 {
        return Err(std::io::Error::last_os_error()).context("uname");
    }
    Ok(Uname {
        sysname: field(&buf.sysname),
        release: field(&buf.release),
        version: field(&buf.version),
        machine: field(&buf.machine),
        nodename: field(&buf.nodename),
        domainname: field(&buf.domainname),
    })
}

pub struct UnameCollector;

impl Source for UnameCollector {
    fn name(&self) -> &'static str {
        "uname"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let u = uname()?;
        let labels = vec![
            ("sysname", u.sysname.as_str()),
            ("release", u.release.as_str()),
            ("version", u.version.as_str()),
            ("machine", u.machine.as_str()),
            ("nodename", u.nodename.as_str()),
            ("domainname", u.domainname.as_str()),
        ];
        gauge(
            enc,
            "node_uname_info",
            "Labeled system information as provided by the uname system call",
            &[Sample::new(labels, 1.0)],
        )?;
        Ok(())
    }
}

/// os-release keys node_exporter turns into `node_os_info` labels, with their label names.
pub const OS_INFO_KEYS: [(&str, &str); 12] = [
    ("BUILD_ID", "build_id"),
    ("ID", "id"),
    ("ID_LIKE", "id_like"),
    ("IMAGE_ID", "image_id"),
    ("IMAGE_VERSION", "image_version"),
    ("NAME", "name"),
    ("PRETTY_NAME", "pretty_name"),
    ("VARIANT", "variant"),
    ("VARIANT_ID", "variant_id"),
    ("VERSION", "version"),
    ("VERSION_CODENAME", "version_codename"),
    ("VERSION_ID", "version_id"),
];

/// Parses os-release(5): `KEY=value` lines, values optionally quoted with `\` escapes.
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = match raw.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let inner = raw[1..].strip_suffix(q).unwrap_or(&raw[1..]);
                let mut s = String::with_capacity(inner.len());
                let mut chars = inner.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' && q == '"' {
                        if let Some(n) = chars.next() {
                            s.push(n);
                        }
                    } else {
                        s.push(c);
                    }
                }
                s
            }
            _ => raw.to_string(),
        };
        out.insert(key.trim().to_string(), value);
    }
    out
}

/// Reads `<rootfs>/etc/os-release`, else `<rootfs>/usr/lib/os-release`.
pub fn read_os_release(rootfs: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let etc = rootfs.join("etc/os-release");
    let lib = rootfs.join("usr/lib/os-release");
    let text = std::fs::read_to_string(&etc)
        .or_else(|_| std::fs::read_to_string(&lib))
        .with_context(|| format!("reading {} and {}", etc.display(), lib.display()))?;
    Ok(parse_os_release(&text))
}

pub struct OsCollector {
    pub rootfs: PathBuf,
}

impl Source for OsCollector {
    fn name(&self) -> &'static str {
        "os"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let os = read_os_release(&self.rootfs)?;
        let labels: Vec<(&'static str, &str)> = OS_INFO_KEYS
            .iter()
            .map(|(key, label)| (*label, os.get(*key).map(String::as_str).unwrap_or("")))
            .collect();
        gauge(
            enc,
            "node_os_info",
            "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, version_codename, version_id",
            &[Sample::new(labels, 1.0)],
        )?;
        // As node_exporter: the numeric VERSION_ID, when it is one.
        if let Some(v) = os.get("VERSION_ID").and_then(|v| v.parse::<f64>().ok()) {
            let labels = vec![
                ("id", os.get("ID").map(String::as_str).unwrap_or("")),
                (
                    "id_like",
                    os.get("ID_LIKE").map(String::as_str).unwrap_or(""),
                ),
                ("name", os.get("NAME").map(String::as_str).unwrap_or("")),
            ];
            gauge(
                enc,
                "node_os_version",
                "Metric containing the major.minor part of the OS version",
                &[Sample::new(labels, v)],
            )?;
        }
        Ok(())
    }
}

pub struct TimeCollector;

impl Source for TimeCollector {
    fn name(&self) -> &'static str {
        "time"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| anyhow::anyhow!("clock before 1970: {e}"))?;
        gauge(
            enc,
            "node_time_seconds",
            "System time in seconds since epoch (1970)",
            &[Sample::bare(now.as_secs_f64())],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_quotes_and_fallback() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        std::fs::write(
            dir.path().join("usr/lib/os-release"),
            "# comment\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nNAME='Deb \"x\"'\nBAD\n",
        )
        .unwrap();
        let os = read_os_release(dir.path()).unwrap();
        assert_eq!(os["PRETTY_NAME"], "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(os["ID"], "debian");
        assert_eq!(os["VERSION_ID"], "12");
        assert_eq!(os["NAME"], "Deb \"x\"");
        assert!(read_os_release(Path::new("/nonexistent-vigia-root")).is_err());
    }

    #[test]
    fn uname_reads_this_kernel() {
        let u = uname().unwrap();
        assert_eq!(u.sysname, "Linux");
        assert!(!u.release.is_empty());
    }
}
