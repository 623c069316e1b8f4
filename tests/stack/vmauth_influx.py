#!/usr/bin/env python3
"""`make validate`: a site's InfluxDB writes through the NOC's ingress land in the centre's
database, whatever database the site names.

The real vmauth (trixie's 1.112, .cache/stack/) with the configuration vmauth/render.sh
writes for one site, in front of a real influxd (Debian's 1.6, the e2e stand-in for
InfluxDB 2) on loopback. A site writes with its token: to vigia, to another database, and
with `db=` twice (vmauth's src_query_args would let `db=other&db=vigia` through to
`other`: InfluxDB reads the first). Every row must be in vigia and none elsewhere; a
wrong token gets 401 and writes nothing.

Usage: vmauth_influx.py VMAUTH_BIN
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "site-token-1234"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(what, fn, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if fn():
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"FAIL: {what} did not come up within {timeout} s")


def main():
    vmauth_bin = sys.argv[1]
    influxd = shutil.which("influxd")
    if not influxd:
        sys.exit("influxd is missing (Debian package influxdb); make validate reports this check as not run")
    work = Path(tempfile.mkdtemp(prefix="vigia-vmauth-influx-"))
    procs = []
    try:
        http_port, bind_port, auth_port = free_port(), free_port(), free_port()
        (work / "influx.conf").write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{bind_port}"\n'
            f'[meta]\n  dir = "{work}/meta"\n[data]\n  dir = "{work}/data"\n  wal-dir = "{work}/wal"\n'
            f'[monitor]\n  store-enabled = false\n[http]\n  bind-address = "127.0.0.1:{http_port}"\n')
        influx = f"http://127.0.0.1:{http_port}"
        procs.append(subprocess.Popen([influxd, "-config", str(work / "influx.conf")],
                                      stdout=subprocess.DEVNULL, stderr=open(work / "influxd.log", "w")))
        wait_for("influxd", lambda: request(f"{influx}/ping")[0] == 204)
        for db in ("vigia", "other"):
            request(f"{influx}/query", urllib.parse.urlencode({"q": f"CREATE DATABASE {db}"}).encode(),
                    {"Content-Type": "application/x-www-form-urlencoded"})

        for d in ("sites", "secrets", "run"):
            (work / d).mkdir()
        (work / "sites/norte.token").write_text(TOKEN + "\n")
        (work / "secrets/influxdb_token").write_text("centre-token")
        subprocess.run(["sh", str(ROOT / "vmauth/render.sh")], check=True, env={
            "PATH": os.environ["PATH"], "VIGIA_SITES_DIR": str(work / "sites"), "VIGIA_SECRETS_DIR": str(work / "secrets"),
            "VIGIA_VMAUTH_RUN_DIR": str(work / "run"), "VIGIA_VMAUTH_RENDER_ONLY": "1", "INFLUXDB_URL": influx})
        procs.append(subprocess.Popen([vmauth_bin, f"-auth.config={work / 'run/auth.yml'}",
                                       f"-httpListenAddr=127.0.0.1:{auth_port}"],
                                      stdout=subprocess.DEVNULL, stderr=open(work / "vmauth.log", "w")))
        ingress = f"http://127.0.0.1:{auth_port}"
        wait_for("vmauth", lambda: request(f"{ingress}/health")[0] == 200)

        problems = []
        writes = [("own", "db=vigia", TOKEN, 204), ("other_db", "db=other", TOKEN, 204),
                  ("twice", "db=other&db=vigia", TOKEN, 204), ("rp", "db=other&precision=s", TOKEN, 204),
                  ("wrong_token", "db=vigia", "not-a-site-token", 401)]
        for name, query, token, want in writes:
            code, body = request(f"{ingress}/write?{query}", f"vmauth_{name} value=1".encode(),
                                 {"Authorization": f"Token {token}"})
            if code != want:
                problems.append(f"/write?{query} with {'the site' if token == TOKEN else 'a wrong'} token: {code} "
                                f"{body[:200]!r}, want {want}")

        def measurements(db):
            _, body = request(f"{influx}/query?" + urllib.parse.urlencode({"db": db, "q": "SHOW MEASUREMENTS"}))
            series = json.loads(body)["results"][0].get("series") or [{"values": []}]
            return {v[0] for v in series[0]["values"]}
        want_in_vigia = {f"vmauth_{n}" for n, _, _, code in writes if code == 204}
        in_vigia, in_other = measurements("vigia"), measurements("other")
        if in_vigia != want_in_vigia:
            problems.append(f"measurements in vigia: {sorted(in_vigia)}, want {sorted(want_in_vigia)}")
        if in_other:
            problems.append(f"a site wrote into another database: {sorted(in_other)}")
        if problems:
            print("FAIL: " + "; ".join(problems))
            print((work / "vmauth.log").read_text()[-2000:])
            return 1
        print(f"site writes through vmauth: {len(want_in_vigia)} of {len(want_in_vigia)} in vigia, none in other; "
              "a wrong token 401")
        return 0
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
