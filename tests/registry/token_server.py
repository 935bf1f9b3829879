#!/usr/bin/env python3
"""A Docker-distribution token server for the registry tests.

It implements the token endpoint of the distribution auth spec: a client
sends `GET /token?service=SVC&scope=repository:NAME:ACTIONS[&scope=...]`
(optionally with HTTP Basic credentials) and receives a JWT, signed RS256
with --key, that `docker-registry` (configured with `auth: token`, its
`rootcertbundle` being --cert) accepts. The OAuth2 form
(`POST /token`, `grant_type=password`) is answered the same way.

Policy:
  * a wrong user or password: 401;
  * an authenticated user: every action asked for;
  * anonymous: `pull` only, on repositories named `public/...`;
  * a service other than --service: 400.

Every request appends one JSON line to --log:
`{"user": ..., "scopes": [...], "granted": [...], "status": N}`.

Python 3 standard library only; signatures are made by `openssl dgst`.
It listens on 127.0.0.1 on a free port and writes that port to
--port-file once it accepts connections. SIGTERM / SIGINT stop it cleanly,
and it exits by itself when its parent process goes away.
"""

import argparse
import base64
import datetime
import json
import secrets
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from serving import Server, serve

ACTIONS = ("pull", "push", "delete", "*")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def cert_der_b64(path: str) -> str:
    """The first certificate of a PEM file, as base64 (standard, padded) DER."""
    text = open(path, encoding="ascii").read()
    begin = "-----BEGIN CERTIFICATE-----"
    end = "-----END CERTIFICATE-----"
    start = text.index(begin) + len(begin)
    body = "".join(text[start:text.index(end, start)].split())
    # round-trip to check it is base64
    return base64.b64encode(base64.b64decode(body)).decode("ascii")


def parse_scope(scope: str):
    """`TYPE:NAME:ACTIONS` (NAME may hold colons) -> (type, name, [actions])."""
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        return None
    return kind, name, [a for a in actions.split(",") if a]


class TokenServer:
    def __init__(self, args):
        self.key = args.key
        self.x5c = cert_der_b64(args.cert)
        self.issuer = args.issuer
        self.service = args.service
        self.expiry = args.expiry
        self.users = {}
        for u in args.user:
            name, sep, password = u.partition(":")
            if not sep:
                raise SystemExit(f"--user {u!r}: expected USER:PASSWORD")
            self.users[name] = password
        self.log_path = args.log
        self.log_lock = threading.Lock()

    def log(self, entry):
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self.log_lock:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line)

    def sign(self, data: bytes) -> bytes:
        out = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.key],
            input=data,
            capture_output=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError("openssl dgst failed: " + out.stderr.decode(errors="replace"))
        return out.stdout

    def grant(self, user, scopes):
        """The access entries `user` (None: anonymous) gets for `scopes`."""
        access = {}
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, wanted = parsed
            if user is not None:
                allowed = [a for a in wanted if a in ACTIONS]
            elif kind == "repository" and name.startswith("public/"):
                allowed = [a for a in wanted if a == "pull"]
            else:
                allowed = []
            if not allowed:
                continue
            entry = access.setdefault((kind, name), [])
            for a in allowed:
                if a not in entry:
                    entry.append(a)
        return [
            {"type": kind, "name": name, "actions": actions}
            for (kind, name), actions in access.items()
        ]

    def token(self, user, access):
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + self.expiry,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self.sign(signing_input.encode("ascii"))
        return signing_input + "." + b64url(signature), now


def make_handler(server: TokenServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "rumoci-test-token-server"

        def log_message(self, format, *args):  # noqa: A002 - quiet
            pass

        def reply(self, status, body: dict, extra=()):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def basic_user(self):
            """(user or None, ok): ok is False for wrong credentials."""
            h = self.headers.get("Authorization")
            if not h:
                return None, True
            scheme, _, value = h.partition(" ")
            if scheme.lower() != "basic":
                return None, False
            try:
                user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None, False
            if not sep or server.users.get(user) != password:
                return user, False
            return user, True

        def answer(self, params, user, ok):
            scopes = []
            for s in params.get("scope", []):
                scopes.extend(s.split())  # some clients join scopes with spaces
            service = (params.get("service") or [""])[0]
            entry = {"user": user, "scopes": scopes, "granted": [], "method": self.command}
            if not ok:
                entry["status"] = 401
                server.log(entry)
                self.reply(
                    401,
                    {"errors": [{"code": "UNAUTHORIZED", "message": "wrong user name or password"}]},
                    [("WWW-Authenticate", 'Basic realm="rumoci test token server"')],
                )
                return
            if service != server.service:
                entry["status"] = 400
                server.log(entry)
                self.reply(400, {"errors": [{"code": "UNSUPPORTED", "message": f"unknown service {service!r}"}]})
                return
            access = server.grant(user, scopes)
            token, now = server.token(user, access)
            entry["granted"] = access
            entry["status"] = 200
            server.log(entry)
            issued = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
            self.reply(
                200,
                {
                    "token": token,
                    "access_token": token,
                    "expires_in": server.expiry,
                    "issued_at": issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            )

        def do_GET(self):
            url = urlsplit(self.path)
            if url.path != "/token":
                self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
                return
            user, ok = self.basic_user()
            self.answer(parse_qs(url.query), user, ok)

        def do_POST(self):
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", errors="replace")
            if url.path != "/token":
                self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
                return
            params = parse_qs(body)
            grant = (params.get("grant_type") or [""])[0]
            if grant == "password":
                user = (params.get("username") or [""])[0]
                ok = server.users.get(user) == (params.get("password") or [None])[0]
            else:
                # refresh tokens are not issued: treat as the Basic request
                user, ok = self.basic_user()
            self.answer(params, user, ok)

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--key", required=True, help="PEM private key that signs the tokens")
    p.add_argument("--cert", required=True, help="PEM certificate of that key (sent as x5c)")
    p.add_argument("--issuer", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--user", action="append", default=[], help="USER:PASSWORD (repeatable)")
    p.add_argument("--expiry", type=int, default=300,
                   help="token lifetime in seconds; negative: already expired")
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    args = p.parse_args()

    server = TokenServer(args)
    httpd = Server(("127.0.0.1", 0), make_handler(server))

    return serve([(httpd, args.port_file)], args.log)

if __name__ == "__main__":
    sys.exit(main())
