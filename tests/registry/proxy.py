#!/usr/bin/env python3
"""An HTTP/1.1 proxy in front of a registry, misbehaving on request.

    proxy.py --upstream http://127.0.0.1:P --mode MODE --port-file PATH --log PATH
             [--hop-port-file PATH]

It listens on 127.0.0.1 on a free port (written to --port-file once it
accepts connections) and forwards every request to --upstream: method,
path, query, headers and body, streamed both ways (Content-Length and
chunked bodies). The registry builds its Location headers from the Host it
is sent (the upstream's); those pointing at the upstream are rewritten to
the proxy, so that a client keeps talking to the proxy during uploads.

A blob request is `/v2/<name>/blobs/<digest>`. MODE decides what happens to
blob GETs (everything else is forwarded as is):

  pass            forward.
  redirect        GET and HEAD answer `307` to the same path on the upstream
                  (another authority, as registries redirect to object
                  storage).
  redirect-chain  GET answers `307` to a second listener of this proxy (its
                  port in --hop-port-file), which answers `307` to the
                  upstream: a redirect that the registry did not answer.
  drop            the first GET of each blob gets its headers and about half
                  its body, then the connection is closed; later GETs (with
                  or without `Range`) are forwarded.
  lie-digest      the body of a blob GET has one byte flipped (same length).

Every request appends one JSON line to --log:
`{"listener", "method", "path", "range", "status", "action"}`.

Python 3 standard library only. SIGTERM / SIGINT stop it cleanly, and it
exits by itself when its parent process goes away.
"""

import argparse
import http.client
import json
import re
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from serving import Server, serve

MODES = ("pass", "redirect", "redirect-chain", "drop", "lie-digest")
BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[A-Za-z0-9=_-]+)$")
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "expect",
}
PIECE = 1 << 20


class Proxy:
    def __init__(self, args):
        up = urlsplit(args.upstream)
        if up.scheme != "http" or not up.hostname or not up.port:
            raise SystemExit(f"--upstream {args.upstream!r}: expected http://HOST:PORT")
        self.up_host = up.hostname
        self.up_port = up.port
        self.up_base = f"http://{up.hostname}:{up.port}"
        self.mode = args.mode
        self.base = None  # http://127.0.0.1:PORT of the main listener
        self.hop_base = None
        self.log_path = args.log
        self.lock = threading.Lock()
        self.dropped = set()

    def log(self, **entry):
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self.lock:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line)

    def first_get(self, digest):
        """True the first time a blob is asked for (drop mode)."""
        with self.lock:
            if digest in self.dropped:
                return False
            self.dropped.add(digest)
            return True


def read_line(rfile, limit=65536):
    line = rfile.readline(limit + 1)
    if len(line) > limit:
        raise ValueError("line too long")
    return line


def pieces(rfile, size, what):
    """The next `size` bytes of `rfile`, in pieces of at most PIECE bytes;
    the client closing before is an error naming `what`."""
    left = size
    while left:
        data = rfile.read(min(left, PIECE))
        if not data:
            raise ConnectionError(f"client closed inside {what}")
        left -= len(data)
        yield data


def request_body(handler):
    """The request body as a sequence of pieces, and whether it is chunked
    (None: there is no body)."""
    te = handler.headers.get("Transfer-Encoding", "")
    if "chunked" in te.lower():
        def chunks():
            while True:
                size_line = read_line(handler.rfile)
                if not size_line:
                    raise ConnectionError("client closed inside a chunked body")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    # trailers up to the empty line
                    while read_line(handler.rfile) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield from pieces(handler.rfile, size, "a chunk")
                read_line(handler.rfile)  # the CRLF after the chunk
        return chunks(), True
    length = handler.headers.get("Content-Length")
    if length is None:
        return None, False
    return pieces(handler.rfile, int(length), "the body"), False


def make_handler(proxy: Proxy, listener: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "rumoci-test-proxy"

        def log_message(self, format, *args):  # noqa: A002 - quiet
            pass

        def note(self, status, action):
            proxy.log(
                listener=listener,
                method=self.command,
                path=self.path,
                range=self.headers.get("Range"),
                status=status,
                action=action,
            )

        def redirect(self, location, action):
            # the request body, if any, is not wanted
            body, _ = request_body(self)
            for _ in body or ():
                pass
            self.send_response(307)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.note(307, action)

        def handle_any(self):
            path_only = self.path.split("?", 1)[0]
            blob = BLOB.match(path_only)
            if listener == "hop":
                self.redirect(proxy.up_base + self.path, "hop-redirect")
                return
            if blob and proxy.mode == "redirect" and self.command in ("GET", "HEAD"):
                self.redirect(proxy.up_base + self.path, "redirect")
                return
            if blob and proxy.mode == "redirect-chain" and self.command == "GET":
                self.redirect(proxy.hop_base + self.path, "redirect-to-hop")
                return
            self.forward(blob)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_OPTIONS = handle_any

        def forward(self, blob):
            conn = http.client.HTTPConnection(proxy.up_host, proxy.up_port, timeout=120)
            try:
                body, chunked = request_body(self)
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    if k.lower() in HOP_BY_HOP or k.lower() == "host":
                        continue
                    conn.putheader(k, v)
                conn.putheader("Host", f"{proxy.up_host}:{proxy.up_port}")
                if chunked:
                    conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                for data in body or ():
                    conn.send(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
                if chunked:
                    conn.send(b"0\r\n\r\n")
                resp = conn.getresponse()
            except (OSError, ValueError, http.client.HTTPException) as e:
                conn.close()
                self.close_connection = True
                msg = f"proxy: upstream failed: {e}\n".encode()
                try:
                    self.send_response(502)
                    self.send_header("Content-Length", str(len(msg)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(msg)
                except OSError:
                    pass
                self.note(502, f"upstream failed: {e}")
                return
            try:
                self.relay(resp, blob)
            finally:
                conn.close()

        def relay(self, resp, blob):
            status = resp.status
            has_body = self.command != "HEAD" and status >= 200 and status not in (204, 304)
            length = resp.getheader("Content-Length")
            action = "forward"
            blob_get = blob is not None and self.command == "GET" and status in (200, 206)
            if blob_get and proxy.mode == "drop" and proxy.first_get(blob.group("digest")):
                action = "drop"
            elif blob_get and proxy.mode == "lie-digest":
                action = "lie"
            self.send_response_only(status, resp.reason)
            for k, v in resp.getheaders():
                lk = k.lower()
                if lk in HOP_BY_HOP:
                    continue
                if lk == "location" and v.startswith(proxy.up_base):
                    v = proxy.base + v[len(proxy.up_base):]
                self.send_header(k, v)
            close_delimited = has_body and length is None and not resp.chunked
            if has_body and length is None and not close_delimited:
                self.send_header("Transfer-Encoding", "chunked")
            if close_delimited or action == "drop":
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if not has_body:
                self.note(status, action)
                return
            total = int(length) if length is not None else None
            stop_at = total // 2 if (action == "drop" and total is not None) else None
            flip_at = (total // 2 if total else 0) if action == "lie" else None
            sent = 0
            try:
                while True:
                    want = PIECE
                    if stop_at is not None:
                        want = min(want, stop_at - sent)
                        if want <= 0:
                            break
                    data = resp.read(want)
                    if not data:
                        break
                    if flip_at is not None and sent <= flip_at < sent + len(data):
                        b = bytearray(data)
                        b[flip_at - sent] ^= 0xFF
                        data = bytes(b)
                    if length is None:
                        self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
                    else:
                        self.wfile.write(data)
                    sent += len(data)
                if length is None and not close_delimited and action != "drop":
                    self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                self.close_connection = True
            if action == "drop":
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.note(status, action if action != "drop" else f"drop after {sent} bytes")

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, help="http://HOST:PORT of the registry")
    p.add_argument("--mode", required=True, choices=MODES)
    p.add_argument("--port-file", required=True)
    p.add_argument("--hop-port-file", help="where the second listener's port goes (redirect-chain)")
    p.add_argument("--log", required=True)
    args = p.parse_args()
    if args.mode == "redirect-chain" and not args.hop_port_file:
        p.error("--mode redirect-chain needs --hop-port-file")

    proxy = Proxy(args)
    servers = [Server(("127.0.0.1", 0), make_handler(proxy, "proxy"))]
    proxy.base = f"http://127.0.0.1:{servers[0].server_address[1]}"
    if args.mode == "redirect-chain":
        servers.append(Server(("127.0.0.1", 0), make_handler(proxy, "hop")))
        proxy.hop_base = f"http://127.0.0.1:{servers[1].server_address[1]}"

    listening = [(servers[0], args.port_file)]
    if args.mode == "redirect-chain":
        listening.insert(0, (servers[1], args.hop_port_file))
    return serve(listening, args.log)

if __name__ == "__main__":
    sys.exit(main())
