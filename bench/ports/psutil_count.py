#!/usr/bin/env python3
"""The seed's method, timed: psutil.net_connections(kind="tcp"), then counts per
configured port, side and state (the same split vigia-ports exposes).

Prints one JSON object: the wall and CPU seconds each full read+count took (the first
one is the warm-up) and this process's peak RSS (VmHWM) in KiB.
"""

import argparse
import collections
import json
import time

import psutil


def count(ports):
    counts = collections.Counter()
    for conn in psutil.net_connections(kind="tcp"):
        status = conn.status.lower()
        if conn.laddr and conn.laddr.port in ports:
            counts[(conn.laddr.port, "local", status)] += 1
        if conn.raddr and conn.raddr.port in ports:
            counts[(conn.raddr.port, "remote", status)] += 1
    return counts


def vmhwm_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ports", required=True)
    p.add_argument("--iterations", type=int, default=6)
    a = p.parse_args()
    if not 1 <= a.iterations <= 50:
        p.error("--iterations must be between 1 and 50")
    ports = {int(x) for x in a.ports.split(",")}
    seconds, cpu_seconds = [], []
    for _ in range(a.iterations):
        start, start_cpu = time.perf_counter(), time.process_time()
        counts = count(ports)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - start_cpu)
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "vmhwm_kib": vmhwm_kib(),
                      "counted": sum(counts.values())}))


if __name__ == "__main__":
    main()
