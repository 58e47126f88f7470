"""What every local payment gateway EMULATOR (sim/stripe_emu.py, sim/adyen_emu.py) runs on: an HTTP
server on a free loopback port and a thread that posts the gateway's webhooks, so that the tests
drive the vendors' official SDKs against a real socket. The wire API of each gateway (routes, auth,
error shapes, idempotency, webhook signatures, test hooks) stays in its own module.
"""
from __future__ import annotations

import queue
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class GatewayEmulator:
    name = "gateway-emu"  # thread names, to tell the emulators apart in a stack dump

    def __init__(self, webhook_url: str | None = None):
        self.webhook_url = webhook_url
        self._lock = threading.RLock()  # one request at a time changes the gateway's state
        self._outbox: queue.Queue = queue.Queue()  # webhooks to post; None ends the delivery thread
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, port: int = 0) -> Self:
        emu = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' HTTP clients expect of a gateway

            def log_message(self, *args):  # quiet: the tests' output is not the place for an access log
                pass

            def do_GET(self):
                emu._serve(self, "GET")

            def do_POST(self):
                emu._serve(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name=self.name).start()
        threading.Thread(target=self._deliver, daemon=True, name=f"{self.name}-webhooks").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._outbox.put(None)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- HTTP --------------------------------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError  # the gateway's wire API

    @staticmethod
    def _body(h: BaseHTTPRequestHandler) -> bytes:
        n = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(n) if n else b""

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes = b"", content_type: str | None = None,
              headers: dict[str, str] | None = None) -> None:
        """One whole answer with its Content-Length, so that the keep-alive connection stays usable."""
        h.send_response(status)
        if content_type:
            h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if body:
            h.wfile.write(body)

    # -- webhooks --------------------------------------------------------------------------------
    def _deliver(self) -> None:
        # A thread of its own, as a gateway does it: the webhook may reach the backend before or
        # after the API answer that caused it.
        while True:
            msg = self._outbox.get()
            if msg is None:
                return
            if self.webhook_url:
                self._post_webhook(msg)

    def _post_webhook(self, msg: dict) -> None:
        raise NotImplementedError  # the gateway's payload, signature and retry policy

    def _post(self, payload: bytes, headers: dict[str, str]) -> bool:
        """POST one webhook to webhook_url; True if the receiver took it (2xx)."""
        req = urllib.request.Request(self.webhook_url, data=payload, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return 200 <= r.status < 300
        except OSError:  # refused, reset, timed out, or an HTTPError answer
            return False
