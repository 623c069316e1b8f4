"""Local stand-in for Telegram's Bot API and a Discord webhook, which cannot be reached
from the test machines: records every request and answers as those services do.

  POST /bot<token>/sendMessage   Telegram: {"ok": true, "result": <a Message>}
  POST /api/webhooks/<id>/<tok>  Discord: 204 No Content
  GET  /_recorded                every request so far as JSON (method, path, headers, body)

On :8080 of every interface, or RECEIVER_BIND and RECEIVER_PORT (the alerting test).
"""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECORDED = []
LOCK = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/_recorded":
            self.send_error(404)
            return
        with LOCK:
            data = json.dumps(RECORDED).encode()
        self._answer(200, data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        with LOCK:
            RECORDED.append(
                {
                    "received": time.time(),
                    "method": "POST",
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type", ""),
                    "body": body,
                }
            )
            message_id = len(RECORDED)
        if self.path.startswith("/bot") and self.path.endswith("/sendMessage"):
            chat = body.get("chat_id", 0) if isinstance(body, dict) else 0
            text = body.get("text", "") if isinstance(body, dict) else ""
            result = {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": int(chat), "type": "group", "title": "noc"},
                "text": text,
            }
            self._answer(200, json.dumps({"ok": True, "result": result}).encode())
        elif self.path.startswith("/api/webhooks/"):
            self._answer(204, b"")
        else:
            self._answer(404, b'{"ok": false}')

    def _answer(self, status, data):
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    bind = os.environ.get("RECEIVER_BIND", "0.0.0.0")
    port = int(os.environ.get("RECEIVER_PORT", "8080"))
    print(f"receiver: Telegram and Discord stand-in on {bind}:{port}", flush=True)
    ThreadingHTTPServer((bind, port), Receiver).serve_forever()
