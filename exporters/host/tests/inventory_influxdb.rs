//! Seed 004's agent, done as an operator expects: the host's users, processes and OS
//! pushed as a snapshot to a real InfluxDB 1.x and queried back by host and time; the same
//! inventory in `/metrics`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_tool, start_vigia_host_with_args, Influxd, Running, Scrape};

const UTMP_RECORD: usize = 384;

fn utmp_record(kind: i16, user: &str, line: &str, host: &str) -> Vec<u8> {
    let mut r = vec![0u8; UTMP_RECORD];
    r[0..2].copy_from_slice(&kind.to_ne_bytes());
    r[8..8 + line.len()].copy_from_slice(line.as_bytes());
    r[44..44 + user.len()].copy_from_slice(user.as_bytes());
    r[76..76 + host.len()].copy_from_slice(host.as_bytes());
    r
}

/// A CPU-bound process with a known name, for at most 20 s.
fn cpu_burner() -> Running {
    let bin = require_tool("stress-ng", "stress-ng");
    let child = Command::new(bin)
        .args(["--cpu", "1", "--timeout", "20s", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start stress-ng");
    Running {
        child,
        addr: "127.0.0.1:0".parse().unwrap(),
    }
}

#[test]
fn inventory_snapshot_lands_in_influxdb_and_metrics() {
    let influx = Influxd::start();
    influx.create_database("vigia");

    // A root filesystem with a utmp of three sessions (two users) and an os-release.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("run")).unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    let mut utmp = utmp_record(2, "reboot", "~", "");
    utmp.extend(utmp_record(7, "ana", "pts/0", "198.18.0.7"));
    utmp.extend(utmp_record(7, "ana", "pts/1", "198.18.0.8"));
    utmp.extend(utmp_record(7, "luis", "tty1", ""));
    utmp.extend(utmp_record(8, "", "pts/2", ""));
    std::fs::write(root.path().join("run/utmp"), utmp).unwrap();
    std::fs::write(
        root.path().join("etc/os-release"),
        "ID=debian\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
    )
    .unwrap();
    let config = root.path().join("host.yaml");
    std::fs::write(
        &config,
        format!(
            "rootfs: {root}\ncollectors:\n  filesystem: false\n  cgroups: false\n  anomaly: false\n  energy: false\ninventory:\n  interval: 1s\n  top_processes: 3\n  host: inventory-test\ninfluxdb:\n  url: {url}\n  database: vigia\n  flush_interval: 200ms\n",
            root = root.path().display(),
            url = influx.url()
        ),
    )
    .unwrap();

    let _burner = cpu_burner();
    let vigia = start_vigia_host_with_args(&[], &[&format!("--config.file={}", config.display())]);

    // /metrics: users from utmp, processes by state, CPU top list after a second reading.
    let first = Scrape::fetch(vigia.addr);
    assert_eq!(first.value("vigia_host_users_logged_in", &[]), Some(3.0));
    assert_eq!(
        first.value("vigia_host_user_sessions", &[("user", "ana")]),
        Some(2.0)
    );
    assert_eq!(
        first.value("vigia_host_user_sessions", &[("user", "luis")]),
        Some(1.0)
    );
    let states = first.family("vigia_host_processes");
    assert!(states.values().sum::<f64>() > 5.0, "{states:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let second = Scrape::fetch(vigia.addr);
    let top = second.family("vigia_host_top_process_cpu_ratio");
    assert!(top.len() <= 3, "bounded to top_processes: {top:?}");
    let (stress_labels, stress_cpu) = top
        .iter()
        .find(|(l, _)| l["name"].starts_with("stress-ng"))
        .unwrap_or_else(|| panic!("stress-ng missing from the top list: {top:?}"));
    // Other work shares the two cores: a busy loop gets a fair share, an idle process none.
    assert!(
        *stress_cpu > 0.1,
        "{stress_labels:?} used {stress_cpu} cores"
    );

    // InfluxDB: the rows of one snapshot, found by host and time.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (inventory, users, processes) = loop {
        let inv = influx.rows(
            "vigia",
            "SELECT * FROM vigia_host_inventory WHERE host = 'inventory-test' AND time > now() - 5m ORDER BY time DESC LIMIT 1",
        );
        let users = influx.rows(
            "vigia",
            "SELECT * FROM vigia_host_users WHERE host = 'inventory-test' AND time > now() - 5m GROUP BY \"user\" ORDER BY time DESC LIMIT 1",
        );
        let procs = influx.rows(
            "vigia",
            "SELECT * FROM vigia_host_processes WHERE host = 'inventory-test' AND time > now() - 5m",
        );
        let has_stress = procs.iter().any(|r| {
            r["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("stress-ng"))
        });
        if !inv.is_empty() && users.len() == 2 && has_stress {
            break (inv, users, procs);
        }
        assert!(
            Instant::now() < deadline,
            "snapshot not in InfluxDB after 20 s: inventory {inv:?}, users {users:?}, processes {procs:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let inv = &inventory[0];
    assert_eq!(inv["users_logged_in"], 3);
    assert_eq!(inv["os_id"], "debian");
    assert_eq!(inv["os_version_id"], "12");
    assert!(inv["processes"].as_i64().unwrap() > 5, "{inv:?}");
    assert!(inv["kernel_release"]
        .as_str()
        .is_some_and(|k| !k.is_empty()));
    let ana = users
        .iter()
        .find(|u| u["user"] == "ana")
        .expect("ana's row");
    assert_eq!(ana["sessions"], 2);
    assert_eq!(ana["lines"], "pts/0,pts/1");
    assert_eq!(ana["from"], "198.18.0.7,198.18.0.8");
    // One snapshot holds at most top_processes rows, ranked.
    let stress = processes
        .iter()
        .filter(|r| {
            r["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("stress-ng"))
        })
        .max_by(|a, b| {
            a["cpu_ratio"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["cpu_ratio"].as_f64().unwrap())
        })
        .unwrap();
    assert!(stress["cpu_ratio"].as_f64().unwrap() > 0.1, "{stress:?}");
    assert!(
        (1..=3).contains(&stress["rank"].as_i64().unwrap()),
        "{stress:?}"
    );
}
