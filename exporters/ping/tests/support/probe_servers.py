#!/usr/bin/env python3
"""Real servers for vigia-ping's tcp and http probe tests, run inside a test namespace:

    probe_servers.py LIFETIME_SECONDS [--http ADDR:PORT] [--https ADDR:PORT:CHAIN:KEY]
                     [--banner ADDR:PORT:TEXT] ...

--http and --https serve the same pages (Python's http.server, TLS from the ssl module):
  /            200, "Welcome to the portal"
  /slow        200 after 0.3 s
  /missing     404
  /redir       302 to /
  /to-https    302 to https://<the Host header's host>/
  /maintenance 200, "Service unavailable: maintenance"
--banner accepts TCP connections, sends TEXT (with \\r\\n), and closes after 2 s.

Prints "ready" once every socket listens; exits by itself after LIFETIME_SECONDS, so a
test that dies leaves nothing behind.
"""
import http.server
import socket
import socketserver
import ssl
import sys
import threading
import time

PAGES = {
    "/": (200, b"<html><body>Welcome to the portal</body></html>"),
    "/slow": (200, b"<html><body>Welcome, slowly</body></html>"),
    "/missing": (404, b"not found"),
    "/maintenance": (200, b"<html><body>Service unavailable: maintenance</body></html>"),
}


class Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path in ("/redir", "/to-https"):
            self.send_response(302)
            host = self.headers.get("Host", "").split(":")[0]
            self.send_header("Location", "/" if self.path == "/redir" else f"https://{host}/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(0.3)
        status, body = PAGES.get(self.path, (404, b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Banner(socketserver.BaseRequestHandler):
    text = b""

    def handle(self):
        self.request.sendall(self.text)
        self.request.settimeout(2)
        try:
            while self.request.recv(4096):
                pass
        except OSError:
            pass


class BannerServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def split_addr(spec):
    host, rest = spec.split(":", 1)
    port, _, more = rest.partition(":")
    return (host, int(port)), more


def main():
    lifetime = float(sys.argv[1])
    args = sys.argv[2:]
    servers = []
    for flag, value in zip(args[::2], args[1::2]):
        addr, more = split_addr(value)
        if flag == "--http":
            servers.append(Server(addr, Pages))
        elif flag == "--https":
            chain, key = more.split(":")
            s = Server(addr, Pages)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(chain, key)
            s.socket = ctx.wrap_socket(s.socket, server_side=True)
            servers.append(s)
        elif flag == "--banner":
            handler = type("B", (Banner,), {"text": more.encode() + b"\r\n"})
            servers.append(BannerServer(addr, handler))
        else:
            sys.exit(f"unknown option {flag}")
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready", flush=True)
    time.sleep(lifetime)


if __name__ == "__main__":
    main()
