#!/usr/bin/env python3
"""A stand-in push service for Belfry's Web Push tests, on loopback.

It checks every push the way a real push service and browser would, with implementations
independent of Belfry's: the VAPID JWT (RFC 8292) is verified with PyJWT against the key in the
`Authorization: vapid t=…, k=…` header and must name this service's origin as `aud`; the body
is decrypted (RFC 8291, aes128gcm) with the `http_ece` package using the subscription's private
key and auth secret, which this script generates.

Endpoints: POST /push/<name> takes a push; `gone` answers 410, `flaky` answers 503 with
Retry-After once and then 201, `redirect` answers 307 to /push/redirected (which would take
it). GET /received lists what arrived. On start it prints one JSON
line: {"port", "p256dh", "auth"}.
"""
import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


PRIVATE_KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC_KEY = PRIVATE_KEY.public_key().public_bytes(
    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
)
AUTH = os.urandom(16)
RECEIVED = []
FLAKY_SEEN = set()
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=None):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/received":
            with LOCK:
                body = json.dumps(RECEIVED).encode()
            self.reply(200, body, {"Content-Type": "application/json"})
        else:
            self.reply(404)

    def do_POST(self):
        name = self.path.rsplit("/", 1)[-1]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        record = {"name": name, "ttl": self.headers.get("TTL"),
                  "urgency": self.headers.get("Urgency"), "topic": self.headers.get("Topic")}
        try:
            record["payload"] = json.loads(self.verify_and_decrypt(body))
        except Exception as error:  # a failed check is a test failure, reported back
            record["error"] = repr(error)
            with LOCK:
                RECEIVED.append(record)
            self.reply(400, repr(error).encode())
            return
        if name == "gone":
            self.reply(410)
            return
        if name == "redirect":
            self.reply(307, headers={"Location": "/push/redirected"})
            return
        if name == "flaky":
            with LOCK:
                first = name not in FLAKY_SEEN
                FLAKY_SEEN.add(name)
            if first:
                self.reply(503, headers={"Retry-After": "1"})
                return
        with LOCK:
            RECEIVED.append(record)
        self.reply(201)

    def verify_and_decrypt(self, body: bytes) -> bytes:
        scheme, _, params = self.headers["Authorization"].partition(" ")
        assert scheme == "vapid", scheme
        fields = dict(p.strip().split("=", 1) for p in params.split(","))
        vapid_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(fields["k"]))
        origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        claims = jwt.decode(fields["t"], vapid_key, algorithms=["ES256"], audience=origin)
        assert claims["exp"] > time.time(), "expired VAPID token"
        assert claims["exp"] <= time.time() + 24 * 3600 + 60, "VAPID token valid for over 24 h"
        assert self.headers["Content-Encoding"] == "aes128gcm"
        return http_ece.decrypt(body, private_key=PRIVATE_KEY, auth_secret=AUTH, version="aes128gcm")


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(json.dumps({"port": server.server_address[1], "p256dh": b64url(PUBLIC_KEY), "auth": b64url(AUTH)}), flush=True)
    # Stop when the test that started us goes away (stdin closes).
    threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
