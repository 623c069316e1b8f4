//! Bad configuration stops vigia-host before it listens, with exit status 2 and the
//! field's name; missing host roots disable collectors instead of crashing it, each
//! said once in the log with the setting, the path and the collectors it turns off.

mod common;

use std::process::Command;

use common::{logged, start_vigia_host, Launch, Scrape};

fn run_with(env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigia-host"))
        .args(args)
        .env_remove("VIGIA_CONFIG_FILE")
        .envs(env.iter().copied())
        .output()
        .expect("run vigia-host");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_exits_2_naming_the_field() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("VIGIA_HOST__INVENTORY__TOP_PROCESSES", "0")],
            "inventory.top_processes",
        ),
        (&[("VIGIA_HOST__PROCFS_ROOT", "host/proc")], "procfs_root"),
        (
            &[("VIGIA_HOST__FILESYSTEM__FS_TYPES_EXCLUDE", "([")],
            "filesystem.fs_types_exclude",
        ),
        (
            &[("VIGIA_HOST__ANOMALY__INTERVAL", "often")],
            "anomaly.interval",
        ),
        (&[("VIGIA_HOST__COLLECTORS__GPU", "true")], "gpu"),
    ];
    for (env, field) in cases {
        let (code, stderr) = run_with(env, &["--check-config"]);
        assert_eq!(code, 2, "{env:?}: {stderr}");
        assert!(
            stderr.contains(field),
            "{env:?}: message does not name {field}: {stderr}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("host.yaml");
    std::fs::write(
        &file,
        "energy:\n  model:\n    idle_watts: -3\n    max_watts: 10\n",
    )
    .unwrap();
    let (code, stderr) = run_with(
        &[],
        &[
            &format!("--config.file={}", file.display()),
            "--check-config",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("energy.model.idle_watts"), "{stderr}");
    let (code, _) = run_with(&[], &["--check-config"]);
    assert_eq!(code, 0, "defaults are a valid configuration");
}

#[test]
fn missing_host_roots_disable_collectors_without_crashing() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("vigia-host.log");
    let run = Launch {
        env: &[
            ("VIGIA_HOST__PROCFS_ROOT", "/nonexistent-vigia/proc"),
            ("VIGIA_HOST__SYSFS_ROOT", "/nonexistent-vigia/sys"),
            ("VIGIA_HOST__ROOTFS", "/nonexistent-vigia/root"),
        ],
        args: &["--log.format=json"],
        log: Some(&log),
        ..Launch::default()
    }
    .start();
    // What the operator reads: one line per missing root, naming the setting, the path
    // and the collectors it turns off; one for the containers (no cgroup tree).
    let text = std::fs::read_to_string(&log).unwrap();
    let roots = logged(
        &log,
        "root directory not found: collectors reading it are disabled",
    );
    let by_field = |field: &str| {
        let lines: Vec<_> = roots.iter().filter(|f| f["field"] == field).collect();
        assert_eq!(lines.len(), 1, "one line for {field}: {text}");
        (
            lines[0]["root"].as_str().unwrap_or("").to_string(),
            lines[0]["collectors"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(
        by_field("procfs_root"),
        (
            "/nonexistent-vigia/proc".to_string(),
            "arp,conntrack,cpu,diskstats,entropy,filefd,filesystem,ipvs,loadavg,mdadm,meminfo,netdev,netstat,nfs,nfsd,pressure,schedstat,sockstat,softnet,stat,udp_queues,vmstat,zfs,inventory,anomaly"
                .to_string()
        )
    );
    assert_eq!(
        by_field("rootfs"),
        (
            "/nonexistent-vigia/root".to_string(),
            "filesystem,os".to_string()
        )
    );
    // The containers' cgroup tree is under sysfs_root: cgroups is named with the
    // collectors that read sysfs.
    let (sys, sys_readers) = by_field("sysfs_root");
    assert_eq!(sys, "/nonexistent-vigia/sys");
    let sys_readers: Vec<&str> = sys_readers.split(',').collect();
    for c in ["cgroups", "netclass", "hwmon", "cpufreq"] {
        assert!(sys_readers.contains(&c), "{c} in {sys_readers:?}");
    }
    assert!(
        !text.contains("panicked"),
        "a missing root is no panic: {text}"
    );
    let s = Scrape::fetch(run.addr);
    assert!(s.family("node_cpu_seconds_total").is_empty());
    assert!(s.family("node_filesystem_size_bytes").is_empty());
    // What needs no root still works.
    assert_eq!(s.family("node_uname_info").len(), 1);
    assert_eq!(s.family("node_time_seconds").len(), 1);
    // And a root that vanishes after start fails its scrape cleanly, visible per collector.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("loadavg"), "0.1 0.2 0.3 1/1 1\n").unwrap();
    let only_loadavg =
        start_vigia_host(&[("VIGIA_HOST__PROCFS_ROOT", dir.path().to_str().unwrap())]);
    let s = Scrape::fetch(only_loadavg.addr);
    assert_eq!(s.value("node_load5", &[]), Some(0.2));
    assert_eq!(
        s.value("node_scrape_collector_success", &[("collector", "loadavg")]),
        Some(1.0)
    );
    assert_eq!(
        s.value("node_scrape_collector_success", &[("collector", "cpu")]),
        Some(0.0)
    );
    assert_eq!(
        s.value("node_scrape_collector_success", &[("collector", "meminfo")]),
        Some(0.0)
    );
    std::fs::remove_file(dir.path().join("loadavg")).unwrap();
    let s = Scrape::fetch(only_loadavg.addr);
    assert_eq!(
        s.value("node_scrape_collector_success", &[("collector", "loadavg")]),
        Some(0.0)
    );
    assert!(
        s.value("vigia_errors_total", &[("source", "loadavg")])
            .unwrap()
            >= 1.0
    );
}
