#!/usr/bin/env python3
"""ICMP echo responder that answers after a delay: a slow host for vigia-ping's tests.

Run inside a network namespace whose kernel echo replies are off
(net.ipv4.icmp_echo_ignore_all=1), as root:

    slow_icmp_responder.py DELAY_SECONDS LIFETIME_SECONDS

It exits by itself after LIFETIME_SECONDS, so a test that dies leaves nothing behind.
"""
import heapq
import itertools
import select
import socket
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def main() -> None:
    delay = float(sys.argv[1])
    lifetime = float(sys.argv[2])
    end = time.monotonic() + lifetime
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    # The test waits for this line: requests sent before the socket exists would be lost.
    print("ready", flush=True)
    pending = []  # (due, tiebreak, packet, destination)
    order = itertools.count()
    while time.monotonic() < end:
        now = time.monotonic()
        wait = min(end - now, pending[0][0] - now if pending else 1.0)
        readable, _, _ = select.select([sock], [], [], max(0.0, wait))
        if readable:
            data, (src, _) = sock.recvfrom(65535)
            header = (data[0] & 0x0F) * 4
            icmp = bytearray(data[header:])
            if len(icmp) >= 8 and icmp[0] == 8 and icmp[1] == 0:
                icmp[0] = 0  # echo reply, same identifier, sequence and payload
                icmp[2:4] = b"\0\0"
                icmp[2:4] = checksum(bytes(icmp)).to_bytes(2, "big")
                heapq.heappush(pending, (time.monotonic() + delay, next(order), bytes(icmp), src))
        while pending and pending[0][0] <= time.monotonic():
            _, _, packet, dst = heapq.heappop(pending)
            sock.sendto(packet, (dst, 0))


if __name__ == "__main__":
    main()
