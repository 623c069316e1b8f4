"""A real SMTP server (aiosmtpd) that keeps every message it accepts, for the end-to-end
test: it stands in for the stack's mail catcher (Mailpit, which has no package here).

SMTP on :1025 as Mailpit's; GET /messages on :8025 answers the accepted messages as JSON
(envelope, headers and text), oldest first. Messages live in memory only. The alerting
test (tests/alerts/) runs it on loopback: SMTP_BIND, SMTP_PORT and LISTING_PORT.
"""

import email
import email.policy
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

MESSAGES = []
LOCK = threading.Lock()


class Keep:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain", "html"))
        with LOCK:
            MESSAGES.append(
                {
                    "received": time.time(),
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "subject": str(msg.get("Subject", "")),
                    "from": str(msg.get("From", "")),
                    "to": str(msg.get("To", "")),
                    "text": body.get_content() if body is not None else "",
                }
            )
        return "250 OK"


class Listing(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/messages":
            self.send_error(404)
            return
        with LOCK:
            data = json.dumps(MESSAGES).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    bind = os.environ.get("SMTP_BIND", "0.0.0.0")
    smtp_port = int(os.environ.get("SMTP_PORT", "1025"))
    listing_port = int(os.environ.get("LISTING_PORT", "8025"))
    controller = Controller(Keep(), hostname=bind, port=smtp_port)
    controller.start()
    print(f"smtp sink: SMTP on {bind}:{smtp_port}, GET /messages on {bind}:{listing_port}", flush=True)
    ThreadingHTTPServer((bind, listing_port), Listing).serve_forever()
