//! node_exporter's `selinux` collector: whether SELinux is on (a selinuxfs mounted at
//! `<sysfs>/fs/selinux`), and then its configured mode (`<rootfs>/etc/selinux/config`)
//! and current mode (`<sysfs>/fs/selinux/enforce`): 1 enforcing, 0 permissive,
//! -1 disabled.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::read_attr;
use crate::config::HostConfig;
use crate::metrics::{gauge, one};

/// statfs(2) `f_type` of selinuxfs.
const SELINUX_MAGIC: i64 = 0xf97c_ff8c;

fn is_selinuxfs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is NUL-terminated; `buf` is only read after a zero return.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut buf) == 0 && buf.f_type as i64 == SELINUX_MAGIC }
}

fn mode(word: &str) -> f64 {
    match word.trim() {
        "enforcing" | "1" => 1.0,
        "permissive" | "0" => 0.0,
        _ => -1.0,
    }
}

pub struct Selinux {
    sysfs_root: PathBuf,
    rootfs: PathBuf,
}

impl Selinux {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            sysfs_root: config.sysfs_root.clone(),
            rootfs: config.rootfs.clone(),
        }
    }
}

impl Source for Selinux {
    fn name(&self) -> &'static str {
        "selinux"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let fs = self.sysfs_root.join("fs/selinux");
        if !is_selinuxfs(&fs) {
            gauge(
                enc,
                "node_selinux_enabled",
                "SELinux is enabled, 1 is true, 0 is false",
                &one(Some(0.0)),
            )?;
            return Ok(());
        }
        let config =
            std::fs::read_to_string(self.rootfs.join("etc/selinux/config")).unwrap_or_default();
        let configured = config
            .lines()
            .find_map(|l| l.trim().strip_prefix("SELINUX="))
            .map(mode)
            .unwrap_or(-1.0);
        let current = read_attr(&fs.join("enforce"))
            .map(|v| mode(&v))
            .unwrap_or(-1.0);
        gauge(
            enc,
            "node_selinux_config_mode",
            "Configured SELinux enforcement mode",
            &one(Some(configured)),
        )?;
        gauge(
            enc,
            "node_selinux_current_mode",
            "Current SELinux enforcement mode",
            &one(Some(current)),
        )?;
        gauge(
            enc,
            "node_selinux_enabled",
            "SELinux is enabled, 1 is true, 0 is false",
            &one(Some(1.0)),
        )?;
        Ok(())
    }
}
