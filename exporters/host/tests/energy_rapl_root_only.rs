//! RAPL counters readable by root only (as every kernel since the CVE-2020-8694 fix makes
//! them) and vigia-host running as an ordinary user, as its container does: it says once
//! that the counters are unreadable and why, then uses the configured model, or exposes
//! `source="none"` without one. The sysfs tree is a fixture whose `energy_uj` is mode 0400
//! and owned by root; vigia-host runs as `nobody` through `setpriv` (util-linux), so the
//! permission error is the kernel's own. Needs root, to drop to `nobody`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{logged, Launch, Scrape};

const UNREADABLE: &str = "energy: RAPL energy counters exist but are unreadable (permission denied): energy_uj is readable by root only since CVE-2020-8694 (PLATYPUS); give vigia-host read access to them (run it as root, or make energy_uj readable to its user) to measure energy";

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn open_dirs(dir: &Path, up_to: &Path) {
    let mut d = dir.to_path_buf();
    loop {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        if d == up_to || !d.pop() {
            break;
        }
    }
}

#[test]
fn root_only_rapl_falls_back_to_the_model_and_says_why_root() {
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("sys");
    let zone = sys.join("class/powercap/intel-rapl:0");
    write(&zone.join("name"), "package-0\n", 0o444);
    write(&zone.join("energy_uj"), "123456789\n", 0o400);
    write(&zone.join("max_energy_range_uj"), "262143328850\n", 0o444);
    open_dirs(&zone, dir.path());
    let nobody = common::AsNobody::new();
    let binary = nobody.binary.clone();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let wrapper = nobody.wrapper();
    let sysfs = sys.to_str().unwrap();
    let common_env = [
        ("VIGIA_HOST__SYSFS_ROOT", sysfs),
        ("VIGIA_HOST__COLLECTORS__ANOMALY", "false"),
        ("VIGIA_HOST__COLLECTORS__INVENTORY", "false"),
        ("VIGIA_HOST__COLLECTORS__FILESYSTEM", "false"),
    ];

    // With a model: the model, labelled as such, and why.
    let log = logs.join("model.log");
    let mut env = common_env.to_vec();
    env.push(("VIGIA_HOST__ENERGY__MODEL__IDLE_WATTS", "40"));
    env.push(("VIGIA_HOST__ENERGY__MODEL__MAX_WATTS", "140"));
    let run = Launch {
        wrapper: &wrapper,
        binary: Some(&binary),
        env: &env,
        args: &["--log.format=json"],
        log: Some(&log),
    }
    .start();
    let s = Scrape::fetch(run.addr);
    assert_eq!(
        s.family("vigia_host_energy_source_info")
            .into_iter()
            .map(|(l, v)| (l["source"].clone(), l["rapl"].clone(), v))
            .collect::<Vec<_>>(),
        vec![("model".to_string(), "unreadable".to_string(), 1.0)]
    );
    let watts = s
        .value(
            "vigia_host_power_watts",
            &[("sensor", "model"), ("source", "model")],
        )
        .expect("model power");
    assert!((40.0..=140.0).contains(&watts), "{watts}");
    assert!(s
        .family("vigia_host_energy_joules_total")
        .keys()
        .all(|l| l["source"] == "model"));
    let text = std::fs::read_to_string(&log).unwrap();
    let warned = logged(&log, UNREADABLE);
    assert_eq!(warned.len(), 1, "logged once: {text}");
    assert_eq!(warned[0]["zones"], "intel-rapl:0", "{text}");
    let model = logged(
        &log,
        "energy: no readable RAPL or hwmon power sensor: estimating from CPU utilisation with the configured linear model (source=\"model\", not a measurement)",
    );
    assert_eq!(model.len(), 1, "{text}");
    assert_eq!(model[0]["rapl"], "unreadable");
    // Scrapes do not repeat the warning.
    let _ = Scrape::fetch(run.addr);
    assert_eq!(logged(&log, UNREADABLE).len(), 1);
    drop(run);

    // Without a model (the default): no energy series, and the info says so.
    let log = logs.join("none.log");
    let run = Launch {
        wrapper: &wrapper,
        binary: Some(&binary),
        env: &common_env,
        args: &["--log.format=json"],
        log: Some(&log),
    }
    .start();
    let s = Scrape::fetch(run.addr);
    assert_eq!(
        s.value(
            "vigia_host_energy_source_info",
            &[("source", "none"), ("rapl", "unreadable")]
        ),
        Some(1.0)
    );
    assert!(s.family("vigia_host_energy_joules_total").is_empty());
    assert!(s.family("vigia_host_power_watts").is_empty());
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged(&log, UNREADABLE).len(), 1, "{text}");
    assert!(
        text.contains("VIGIA_HOST__ENERGY__MODEL__IDLE_WATTS"),
        "the log names the setting: {text}"
    );
    drop(run);

    // The same tree read as root: measured, the model ignored.
    let log = logs.join("root.log");
    let mut env = common_env.to_vec();
    env.push(("VIGIA_HOST__ENERGY__MODEL__IDLE_WATTS", "40"));
    env.push(("VIGIA_HOST__ENERGY__MODEL__MAX_WATTS", "140"));
    let run = Launch {
        env: &env,
        args: &["--log.format=json"],
        log: Some(&log),
        ..Launch::default()
    }
    .start();
    let s = Scrape::fetch(run.addr);
    assert_eq!(
        s.value(
            "vigia_host_energy_joules_total",
            &[("zone", "package-0"), ("source", "rapl")]
        ),
        Some(123.456789)
    );
    assert_eq!(
        s.value(
            "vigia_host_energy_source_info",
            &[("source", "rapl"), ("rapl", "readable")]
        ),
        Some(1.0)
    );
    assert!(s.family("vigia_host_power_watts").is_empty());
    assert!(logged(&log, UNREADABLE).is_empty());
}
