//! node_exporter's `uname` collector: the kernel's uname(2) as labels.

use std::ffi::CStr;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use crate::metrics::{gauge, Sample};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnameInfo {
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

pub fn uname() -> anyhow::Result<UnameInfo> {
    // SAFETY: `buf` is a plain C struct that uname fills in; read only on success.
    let mut buf: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut buf) } != 0 {
        return Err(std::io::Error::last_os_error()).context("uname");
    }
    Ok(UnameInfo {
        sysname: field(&buf.sysname),
        release: field(&buf.release),
        version: field(&buf.version),
        machine: field(&buf.machine),
        nodename: field(&buf.nodename),
        domainname: field(&buf.domainname),
    })
}

/// node_exporter's `uname` collector.
pub struct Uname;

impl Source for Uname {
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
            "Labeled system information as provided by the uname system call.",
            &[Sample::new(labels, 1.0)],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uname_reads_this_kernel() {
        let u = uname().unwrap();
        assert_eq!(u.sysname, "Linux");
        assert!(!u.release.is_empty());
    }
}
