"""What the registry test servers (token_server.py, proxy.py) share: a
threading HTTP server, the port file written once it listens, and the loop
that runs until SIGTERM / SIGINT or until the process that started it is
gone. Python 3 standard library only."""

import os
import signal
import sys
import threading
from http.server import ThreadingHTTPServer


class Server(ThreadingHTTPServer):
    """Threads per connection, not waited for on close; a client that goes
    away mid-request is not an error worth a traceback."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def write_port(path, port):
    """PORT written to path atomically (readers never see half a file)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def serve(listening, log):
    """Serve every (server, port_file) of listening; create the log file,
    then write the port files (the last one last: the test waits on it).
    Returns 0 once stopped."""
    stopping = threading.Event()

    def stop(*_):
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        for s, _ in listening
    ]
    for t in threads:
        t.start()
    open(log, "a", encoding="utf-8").close()
    for s, port_file in listening:
        write_port(port_file, s.server_address[1])
    parent = os.getppid()
    while not stopping.wait(0.5):
        if os.getppid() != parent:  # the process that started us is gone
            break
    for s, _ in listening:
        s.shutdown()
        s.server_close()
    return 0
