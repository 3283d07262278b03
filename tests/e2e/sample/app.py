"""The sample app of the end-to-end suite: answers HTTP, fails a share of requests, exports RED metrics.

``ERROR_PERCENT`` (from the pod template, so a new value is a new revision) sets the share of 500s.
Metrics are the conventional ones the operator's templates read: ``http_requests_total{code}`` and
``http_request_duration_seconds``. ``--load URL`` turns it into the load generator instead.
"""

import os
import random
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import Counter, Histogram, start_http_server

REQUESTS = Counter("http_requests_total", "Requests answered, by status code.", ["code"])
DURATION = Histogram("http_request_duration_seconds", "Time to answer a request.")
ERROR_PERCENT = float(os.environ.get("ERROR_PERCENT", "0"))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        with DURATION.time():
            code = 500 if random.uniform(0, 100) < ERROR_PERCENT else 200
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"ok\n" if code == 200 else b"failed\n")
        REQUESTS.labels(str(code)).inc()

    def log_message(self, *args: object) -> None:
        pass


def load(url: str, rate: float) -> None:
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
        except OSError:
            pass
        time.sleep(1 / rate)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--load"]:
        load(sys.argv[2], float(os.environ.get("RATE", "50")))
    start_http_server(9090)
    ThreadingHTTPServer(("", 8080), Handler).serve_forever()
