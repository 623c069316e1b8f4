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
    start_vigia_host_with_args(
        &[
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
}
