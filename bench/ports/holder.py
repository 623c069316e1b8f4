#!/usr/bin/env python3
"""Holds N real TCP connections open on loopback for the vigia-ports benchmark.

N client sockets connect to one listener on each of the given ports; the N accepted
server sockets are kept too, so the kernel has 2N + len(ports) TCP sockets to report.
A share of the connections is half-closed by the client (shutdown(SHUT_WR)): the
accepted side then sits in CLOSE_WAIT and the client side in FIN_WAIT2 for as long as
we hold them. That exercises the per-state split with counts that stay put during the
measurement (TIME_WAIT sockets would expire in the middle of it).

The sockets are spread over worker processes because the open-files hard limit may be
low (20,000 on the bench machines) and cannot be raised without CAP_SYS_RESOURCE.

Protocol with the harness: one JSON line on stdout when every connection is up, then we
hold until stdin closes or --timeout passes, whichever comes first. Every socket is
closed with SO_LINGER 0 (RST) so the next run does not start with thousands of
TIME_WAIT sockets in the table.
"""

import argparse
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import time

# Ephemeral ports are unique per source address when bound with port 0, so
# spreading clients over several 127/8 sources keeps each well below the
# ~28k-port default range.
CLIENTS_PER_SOURCE = 10_000
SOURCE_PREFIX = "127.77.0."
LISTEN_ADDRESS = "127.0.0.1"
# Connect this many clients, then drain the accept queues, so no listener's
# backlog (4096) fills up even with every worker connecting at once.
BATCH = 500
MAX_CONNECTIONS = 200_000
# File descriptors a worker keeps free for the interpreter and inherited ones.
FD_RESERVE = 200
LINGER_RST = struct.pack("ii", 1, 0)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, required=True)
    p.add_argument("--ports", required=True, help="comma-separated listener ports")
    p.add_argument("--close-wait-share", type=float, default=0.1)
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds after which the holder exits by itself")
    a = p.parse_args()
    if not 1 <= a.connections <= MAX_CONNECTIONS:
        p.error(f"--connections must be between 1 and {MAX_CONNECTIONS}")
    if not 0.0 <= a.close_wait_share <= 1.0:
        p.error("--close-wait-share must be between 0 and 1")
    try:
        a.ports = [int(x) for x in a.ports.split(",")]
    except ValueError:
        p.error("--ports must be comma-separated integers")
    if not a.ports or any(not 1 <= x <= 65535 for x in a.ports):
        p.error("--ports must hold ports between 1 and 65535")
    return a


def fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def rst_close(sockets):
    for s in sockets:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        except OSError:
            pass
        s.close()


def drain(listeners, accepted, quota):
    for listener in listeners:
        while len(accepted) < quota:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                break
            accepted.append(conn)


def worker(first, count, a, listeners, sources, deadline, control, report):
    """Opens `count` clients and accepts `count` connections (anybody's: the
    listeners are shared), reports, then holds until `control` reaches EOF."""
    clients, accepted = [], []
    try:
        for j in range(count):
            g = first + j
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            clients.append(c)
            c.bind((SOURCE_PREFIX + str(1 + g % sources), 0))
            c.settimeout(max(1.0, deadline - time.monotonic()))
            c.connect((LISTEN_ADDRESS, a.ports[g % len(a.ports)]))
            if (j + 1) % BATCH == 0:
                drain(listeners, accepted, count)
        while len(accepted) < count and time.monotonic() < deadline:
            select.select(listeners, [], [], 0.05)
            drain(listeners, accepted, count)
        if len(accepted) < count:
            os.write(report, f"accepted only {len(accepted)} of {count}\n".encode())
            return 1
        half_closed = int(count * a.close_wait_share)
        for c in clients[:half_closed]:
            c.shutdown(socket.SHUT_WR)
        os.write(report, f"ok {half_closed}\n".encode())
        while time.monotonic() < deadline:
            ready, _, _ = select.select([control], [], [], 1.0)
            if ready and not os.read(control, 64):
                break
        return 0
    except OSError as e:
        os.write(report, f"{e}\n".encode())
        return 1
    finally:
        rst_close(clients + accepted)


def main():
    # SIGTERM (the harness being stopped) must still RST-close everything.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("holder: terminated"))
    a = parse_args()
    started = time.monotonic()
    deadline = started + a.timeout
    per_worker = (fd_limit() - FD_RESERVE) // 2
    if per_worker < 100:
        sys.exit("holder: open-files limit too low (need at least 400)")
    workers = -(-a.connections // per_worker)
    sources = -(-a.connections // CLIENTS_PER_SOURCE)

    listeners = []
    for port in a.ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LISTEN_ADDRESS, port))
        except OSError as e:
            sys.exit(f"holder: cannot listen on {LISTEN_ADDRESS}:{port}: {e}")
        s.listen(4096)
        s.setblocking(False)
        listeners.append(s)

    children = []  # (pid, control write end, report read end)
    first = 0
    for w in range(workers):
        count = a.connections // workers + (1 if w < a.connections % workers else 0)
        control_r, control_w = os.pipe()
        report_r, report_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(control_w)
            os.close(report_r)
            for _, cw, rr in children:
                os.close(cw)
                os.close(rr)
            code = 1
            try:
                code = worker(first, count, a, listeners, sources, deadline,
                              control_r, report_w)
            finally:
                os._exit(code)
        os.close(control_r)
        os.close(report_w)
        children.append((pid, control_w, report_r))
        first += count

    def stop_workers():
        for _, cw, _ in children:
            try:
                os.close(cw)
            except OSError:
                pass
        end = time.monotonic() + 30
        for pid, _, _ in children:
            while time.monotonic() < end:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                time.sleep(0.05)
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        rst_close(listeners)

    try:
        half_closed = 0
        for pid, _, rr in children:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([rr], [], [], max(0.0, remaining))
            line = os.read(rr, 4096).decode().strip() if ready else "timed out"
            if not line.startswith("ok "):
                sys.exit(f"holder: worker {pid}: {line or 'exited'}")
            half_closed += int(line[3:])

        json.dump({"pid": os.getpid(), "workers": [p for p, _, _ in children],
                   "connections": a.connections,
                   "close_wait": half_closed,
                   "sources": sources,
                   "setup_seconds": round(time.monotonic() - started, 2)}, sys.stdout)
        sys.stdout.write("\n")
        sys.stdout.flush()

        while time.monotonic() < deadline:
            ready, _, _ = select.select([sys.stdin], [], [], 1.0)
            if ready and not os.read(sys.stdin.fileno(), 4096):
                break
    finally:
        stop_workers()


if __name__ == "__main__":
    main()
