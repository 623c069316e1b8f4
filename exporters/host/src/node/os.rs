//! node_exporter's `os` collector: os-release(5) of the host (under `rootfs`) as labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use crate::config::HostConfig;
use crate::metrics::{gauge, Sample};

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

/// Reads `<rootfs>/etc/os-release`, else (when it does not exist)
/// `<rootfs>/usr/lib/os-release`.
pub fn read_os_release(rootfs: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let etc = rootfs.join("etc/os-release");
    let lib = rootfs.join("usr/lib/os-release");
    let text = match std::fs::read_to_string(&etc) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::read_to_string(&lib).with_context(|| format!("reading {}", lib.display()))?
        }
        r => r.with_context(|| format!("reading {}", etc.display()))?,
    };
    Ok(parse_os_release(&text))
}

/// `^[0-9]+\.?[0-9]*` of a version, as a number (`22.04.3` → 22.04).
pub fn major_minor(version: &str) -> Option<f64> {
    let digits = version.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let mut end = digits;
    if version.as_bytes().get(end) == Some(&b'.') {
        end += 1;
        end += version.as_bytes()[end..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
    }
    version[..end].trim_end_matches('.').parse().ok()
}

/// node_exporter's `os` collector.
pub struct Os {
    rootfs: PathBuf,
}

impl Os {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            rootfs: config.rootfs.clone(),
        }
    }
}

impl Source for Os {
    fn name(&self) -> &'static str {
        "os"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let os = match read_os_release(&self.rootfs) {
            Err(e) if super::util::is_not_found(&e) => {
                return Err(SourceError::no_data("no os-release file"))
            }
            r => r?,
        };
        let labels: Vec<(&'static str, &str)> = OS_INFO_KEYS
            .iter()
            .map(|(key, label)| (*label, os.get(*key).map(String::as_str).unwrap_or("")))
            .collect();
        gauge(
            enc,
            "node_os_info",
            "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, version_codename, version_id.",
            &[Sample::new(labels, 1.0)],
        )?;
        // As node_exporter: the leading `major.minor` of VERSION_ID, when there is one.
        if let Some(v) = os
            .get("VERSION_ID")
            .and_then(|v| major_minor(v))
            .filter(|v| *v > 0.0)
        {
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
                "Metric containing the major.minor part of the OS version.",
                &[Sample::new(labels, v)],
            )?;
        }
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
    fn versions_as_node_exporter() {
        assert_eq!(major_minor("12"), Some(12.0));
        assert_eq!(major_minor("22.04.3"), Some(22.04));
        assert_eq!(major_minor("rolling"), None);
    }
}
