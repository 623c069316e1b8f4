#!/usr/bin/env python3
"""Alertmanager's inhibition rules and the maintenance silences, against a real
Alertmanager running vigia's rendered configuration (tests/stack/run-alertmanager.sh):

    inhibitions.py ALERTMANAGER_YML AMTOOL

Alerts are added with `amtool alert add` and read back with `amtool alert query`, which
reports for each whether Alertmanager holds it back (inhibited, silenced) or lets it
through. Prints what is wrong and exits 1, or exits 0 silently. Needs root (the
Alertmanager wrapper runs it in a mount namespace of its own).
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(config, amtool):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tempfile.mkdtemp(prefix="vigia-inhibit-")
    am = subprocess.Popen(
        [str(ROOT / "tests/stack/run-alertmanager.sh"), f"--config.file={config}",
         f"--storage.path={data}", f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=open(Path(data) / "am.log", "w"))
    problems = []
    try:
        def tool(*args):
            return subprocess.run([amtool, f"--alertmanager.url={url}", *args], capture_output=True,
                                  text=True, timeout=30, check=True).stdout
        deadline = time.monotonic() + 30
        while True:
            try:
                tool("silence", "query", "-q")
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline or am.poll() is not None:
                    print(Path(data, "am.log").read_text()[-3000:])
                    return 1
                time.sleep(0.2)

        def add(**labels):
            tool("alert", "add", *(f"{k}={v}" for k, v in labels.items()))

        ping = {"job": "vigia-ping", "instance": "vigia-ping:9471"}
        # A flapping target and its own down alert; another target only down.
        add(alertname="PingTargetFlapping", severity="critical", target="flappy", site="oeste", **ping)
        add(alertname="PingTargetDown", severity="critical", target="flappy", site="oeste", **ping)
        add(alertname="PingTargetDown", severity="critical", target="steady", site="oeste", **ping)
        # Down and slow at once: the warning is held back.
        add(alertname="PingHighLatency", severity="warning", target="steady", site="oeste", **ping)
        add(alertname="PingHighLatency", severity="warning", target="slow", site="oeste", **ping)
        # An uplink down at a site in maintenance (maintenance.txt below).
        add(alertname="PingUplinkDown", severity="critical", target="router-obras", site="obras", **ping)
        add(alertname="HostHighCpu", severity="warning", target="srv-obras:9472", site="obras", host="srv-obras")
        # Maintenance: a window for site obras, now; one for a target, later.
        now = datetime.now(timezone.utc).replace(microsecond=0)
        iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
        windows = Path(data) / "maintenance.txt"
        windows.write_text(
            f"{iso(now - timedelta(minutes=1))} {iso(now + timedelta(hours=1))} site=obras fibre works\n"
            f"{iso(now + timedelta(days=1))} {iso(now + timedelta(days=1, hours=1))} target=steady later\n")
        env = dict(os.environ, AMTOOL=amtool, ALERTMANAGER_URL=url)
        subprocess.run(["sh", str(ROOT / "alertmanager/maintenance.sh"), "sync", str(windows)], env=env,
                       check=True, capture_output=True, timeout=60)

        def state():
            alerts = json.loads(tool("alert", "query", "-o", "json", "-a", "-i", "-s"))
            return {(a["labels"]["alertname"], a["labels"].get("target")): a["status"] for a in alerts}

        def held(got, key):
            st = got.get(key)
            if st is None:
                problems.append(f"{key}: not in Alertmanager")
                return None
            return st["state"] == "suppressed"

        got = state()
        expect = {
            ("PingTargetFlapping", "flappy"): False,
            ("PingTargetDown", "flappy"): True,      # flapping pages once, as flapping
            ("PingTargetDown", "steady"): False,
            ("PingHighLatency", "steady"): True,     # critical on the same target
            ("PingHighLatency", "slow"): False,
            ("PingUplinkDown", "router-obras"): True,  # site obras in maintenance
            ("HostHighCpu", "srv-obras:9472"): True,   # the whole site, not only ping
        }
        for key, want in expect.items():
            if held(got, key) is not want:
                problems.append(f"{key}: {'held back' if want else 'let through'} expected, got {got.get(key)}")
        if got.get(("PingUplinkDown", "router-obras"), {}).get("silencedBy") == []:
            problems.append("router-obras is held back, but not by a silence")

        # Storm: the guard holds back every site's ping alerts, and nothing else.
        add(alertname="PingManySitesDown", severity="critical")
        got = state()
        for key in [("PingTargetFlapping", "flappy"), ("PingTargetDown", "steady"), ("PingHighLatency", "slow")]:
            if held(got, key) is not True:
                problems.append(f"{key}: not held back by PingManySitesDown: {got.get(key)}")
        if held(got, ("PingManySitesDown", None)) is not False:
            problems.append(f"PingManySitesDown itself held back: {got.get(('PingManySitesDown', None))}")

        # The target window starts tomorrow: a pending silence exists, steady not muted by it.
        silences = tool("silence", "query", "-o", "extended", 'vigia_maintenance!="maintenance.txt"')
        if 'target="steady"' not in silences or 'site="obras"' not in silences:
            problems.append(f"maintenance silences missing:\n{silences}")
        # A second pass changes nothing (one silence per window).
        out = subprocess.run(["sh", str(ROOT / "alertmanager/maintenance.sh"), "sync", str(windows)], env=env,
                             check=True, capture_output=True, text=True, timeout=60).stdout
        if out.strip():
            problems.append(f"a second sync did something: {out}")
        # The window removed from the file: its silence expired, the site pages again.
        windows.write_text(windows.read_text().splitlines()[1] + "\n")
        subprocess.run(["sh", str(ROOT / "alertmanager/maintenance.sh"), "sync", str(windows)], env=env,
                       check=True, capture_output=True, timeout=60)
        got = state()
        if held(got, ("HostHighCpu", "srv-obras:9472")) is not False:
            problems.append(f"srv-obras still held back after its window left the file: {got.get(('HostHighCpu', 'srv-obras:9472'))}")
    finally:
        am.terminate()
        try:
            am.wait(10)
        except subprocess.TimeoutExpired:
            am.kill()
        subprocess.run(["rm", "-rf", data])
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
