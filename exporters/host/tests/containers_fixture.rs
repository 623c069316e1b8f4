//! Containers from cgroup trees laid out as the kernel does (fixtures under
//! `tests/fixtures/`), read by the real binary and checked in its `/metrics`.

mod common;

use std::path::PathBuf;

use common::{start_vigia_host_with_args, Scrape};

const ID1: &str = "4f3c2b1a09f8e7d6c5b4a3928170f6e5d4c3b2a190f8e7d6c5b4a3928170f6e5";
const ID2: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const ID3: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const POD: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Only the cgroups collector (`--collector.disable-defaults --collector.cgroups`),
/// pointed at a fixture tree, without a Docker socket.
fn start_on(tree: &str) -> common::Running {
    let root = fixture(tree);
    let proc_root = root.join("proc").display().to_string();
    let sys_root = root.join("sys").display().to_string();
    let socket = root.join("no-docker.sock").display().to_string();
    let rootfs = root.display().to_string();
    start_vigia_host_with_args(
        &[
            ("VIGIA_HOST__ROOTFS", &rootfs),
            ("VIGIA_HOST__PROCFS_ROOT", &proc_root),
            ("VIGIA_HOST__SYSFS_ROOT", &sys_root),
            ("VIGIA_HOST__CONTAINERS__DOCKER_SOCKET", &socket),
        ],
        &["--collector.disable-defaults", "--collector.cgroups"],
    )
}

#[test]
fn cgroup_v2_docker_and_kubernetes_containers() {
    let run = start_on("cgroup-v2");
    let s = Scrape::fetch(run.addr);
    let docker_id = format!("/system.slice/docker-{ID1}.scope");
    let kube_id = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID2}.scope",
        POD.replace('-', "_")
    );
    let cpu = s.family("container_cpu_usage_seconds_total");
    assert_eq!(
        cpu.len(),
        2,
        "exactly the two containers, not docker.service: {cpu:?}"
    );
    assert_eq!(
        s.value(
            "container_cpu_usage_seconds_total",
            &[("id", &docker_id), ("cpu", "total")]
        ),
        Some(12.5)
    );
    assert_eq!(
        s.value(
            "container_cpu_usage_seconds_total",
            &[("id", &kube_id), ("cpu", "total"), ("pod_uid", POD)]
        ),
        Some(3.0)
    );
    assert_eq!(
        s.value("container_memory_usage_bytes", &[("id", &docker_id)]),
        Some(104857600.0)
    );
    // Working set as cAdvisor: usage − inactive_file.
    assert_eq!(
        s.value("container_memory_working_set_bytes", &[("id", &docker_id)]),
        Some(104857600.0 - 30000000.0)
    );
    assert_eq!(
        s.value(
            "container_memory_working_set_bytes",
            &[("id", &kube_id), ("pod_uid", POD)]
        ),
        Some(1048576.0)
    );
    // Network from the container's namespace, through its first process; lo left out.
    assert_eq!(
        s.value(
            "container_network_receive_bytes_total",
            &[("id", &docker_id), ("interface", "eth0")]
        ),
        Some(123456.0)
    );
    assert_eq!(
        s.value(
            "container_network_transmit_bytes_total",
            &[("id", &docker_id), ("interface", "eth0")]
        ),
        Some(65432.0)
    );
    assert_eq!(s.family("container_network_receive_bytes_total").len(), 1);
    let seen = s
        .value("container_last_seen", &[("id", &docker_id)])
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - seen).abs() < 60.0, "last_seen {seen} vs now {now}");
    assert_eq!(
        s.value("node_scrape_collector_success", &[("collector", "cgroups")]),
        Some(1.0)
    );
    // cAdvisor's CPU split and CFS throttling: the Docker container has a quota (0.5 CPU),
    // the pod's container none, so only the first has container_cpu_cfs_* and a quota.
    let docker = [("id", docker_id.as_str())];
    let kube = [("id", kube_id.as_str()), ("pod_uid", POD)];
    let v = |name: &str, l: &[(&str, &str)]| s.value(name, l);
    assert_eq!(v("container_cpu_user_seconds_total", &docker), Some(10.0));
    assert_eq!(v("container_cpu_system_seconds_total", &docker), Some(2.5));
    assert_eq!(v("container_cpu_user_seconds_total", &kube), Some(2.0));
    assert_eq!(v("container_cpu_cfs_periods_total", &docker), Some(250.0));
    assert_eq!(
        v("container_cpu_cfs_throttled_periods_total", &docker),
        Some(12.0)
    );
    assert_eq!(
        v("container_cpu_cfs_throttled_seconds_total", &docker),
        Some(3.4)
    );
    assert_eq!(s.family("container_cpu_cfs_periods_total").len(), 1);
    assert_eq!(v("container_spec_cpu_quota", &docker), Some(50000.0));
    assert_eq!(v("container_spec_cpu_quota", &kube), None);
    assert_eq!(v("container_spec_cpu_period", &docker), Some(100000.0));
    assert_eq!(v("container_spec_cpu_period", &kube), Some(100000.0));
    // cpu.weight as v1 shares, cAdvisor's conversion: 2 + (w − 1) × 262142 / 9999.
    assert_eq!(v("container_spec_cpu_shares", &docker), Some(2597.0));
    assert_eq!(v("container_spec_cpu_shares", &kube), Some(2046.0));
    // A limit, and "max" as cAdvisor writes no limit: 0.
    assert_eq!(
        v("container_spec_memory_limit_bytes", &docker),
        Some(268435456.0)
    );
    assert_eq!(v("container_spec_memory_limit_bytes", &kube), Some(0.0));
    assert_eq!(v("container_memory_cache", &docker), Some(40000000.0));
    assert_eq!(v("container_memory_rss", &docker), Some(50000000.0));
    assert_eq!(v("container_memory_cache", &kube), Some(0.0));
    let machine = [
        ("boot_id", "6b3b6f4e-1b2c-4d5e-8f90-a1b2c3d4e5f6"),
        ("machine_id", "5e1c0ffee0ddba11c0ffee0ddba11c0f"),
        ("system_uuid", "0f3c1d2e-aaaa-bbbb-cccc-0123456789ab"),
    ];
    assert_eq!(v("machine_cpu_cores", &machine), Some(4.0));
    assert_eq!(
        v("machine_memory_bytes", &machine),
        Some(16300512.0 * 1024.0)
    );
    for family in [
        "container_cpu_user_seconds_total",
        "container_spec_cpu_quota",
        "container_memory_cache",
        "machine_cpu_cores",
    ] {
        let meta = &s.meta[family];
        assert!(
            meta.help.is_some() && meta.kind.is_some(),
            "{family}: {meta:?}"
        );
    }
    // No Docker socket: no disk use (it is measured for containers the engine knows).
    assert!(s.family("container_fs_usage_bytes").is_empty());
    // Host collectors were switched off: none of their families appear.
    assert!(s.family("node_cpu_seconds_total").is_empty());
}

#[test]
fn cgroup_v1_cgroupfs_driver() {
    let run = start_on("cgroup-v1");
    let s = Scrape::fetch(run.addr);
    let id = format!("/docker/{ID3}");
    assert_eq!(s.family("container_cpu_usage_seconds_total").len(), 1);
    assert_eq!(
        s.value(
            "container_cpu_usage_seconds_total",
            &[("id", &id), ("cpu", "total")]
        ),
        Some(2.5)
    );
    assert_eq!(
        s.value("container_memory_usage_bytes", &[("id", &id)]),
        Some(8388608.0)
    );
    assert_eq!(
        s.value("container_memory_working_set_bytes", &[("id", &id)]),
        Some(8388608.0 - 3145728.0)
    );
    // cpuacct.stat in USER_HZ ticks; the cpu controller's CFS settings and throttling.
    let c = [("id", id.as_str())];
    assert_eq!(s.value("container_cpu_user_seconds_total", &c), Some(1.8));
    assert_eq!(s.value("container_cpu_system_seconds_total", &c), Some(0.7));
    assert_eq!(s.value("container_spec_cpu_quota", &c), Some(25000.0));
    assert_eq!(s.value("container_spec_cpu_period", &c), Some(100000.0));
    assert_eq!(s.value("container_spec_cpu_shares", &c), Some(512.0));
    assert_eq!(s.value("container_cpu_cfs_periods_total", &c), Some(40.0));
    assert_eq!(
        s.value("container_cpu_cfs_throttled_periods_total", &c),
        Some(7.0)
    );
    assert_eq!(
        s.value("container_cpu_cfs_throttled_seconds_total", &c),
        Some(1.5)
    );
    // v1's "no limit" (a page-rounded 2^63 − 1) is 0, as cAdvisor; the hierarchical
    // cache and RSS with memory.use_hierarchy.
    assert_eq!(s.value("container_spec_memory_limit_bytes", &c), Some(0.0));
    assert_eq!(s.value("container_memory_cache", &c), Some(5242880.0));
    assert_eq!(s.value("container_memory_rss", &c), Some(2097152.0));
}
