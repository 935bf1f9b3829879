#!/usr/bin/env python3
"""A reverse proxy in front of an S3 server that answers a storm of
`503 SlowDown`: each distinct request (method, path and query) is refused
with 503 the first FAILS times it arrives, then forwarded unchanged (the
Host header kept, so AWS Signature V4 still verifies upstream).

    storm_proxy.py UPSTREAM_PORT FAILS PORT_FILE

Listens on a free port of 127.0.0.1, writes it to PORT_FILE, and counts
the 503s it served in PORT_FILE.count after each one.
"""
import http.client
import http.server
import sys
import threading

UPSTREAM = int(sys.argv[1])
FAILS = int(sys.argv[2])
PORT_FILE = sys.argv[3]
SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b'<Message>Please reduce your request rate.</Message></Error>')

seen = {}
served = 0
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        global served
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        key = (self.command, self.path)
        with lock:
            n = seen.get(key, 0)
            seen[key] = n + 1
            storm = n < FAILS
            if storm:
                served += 1
                with open(PORT_FILE + ".count", "w") as f:
                    f.write(str(served))
        if storm:
            self.send_response(503, "Slow Down")
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(SLOWDOWN)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(SLOWDOWN)
            return
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():
            if k.lower() not in ("connection", "keep-alive", "proxy-connection"):
                conn.putheader(k, v)
        conn.endheaders(body if body else None)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os  # noqa: E402
os.replace(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
