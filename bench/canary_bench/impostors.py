"""What may stand at a Prometheus address: hostile impostors, and a guarded gateway in front of a real one.

Each server runs on loopback in a thread of its own (with its own event loop), so it
behaves the same whether the client is a test's event loop or an operator process:

- ``Impostor``: answers every request in one hostile or broken way (hangs, trickles a
  byte a second, streams 32 MiB, HTML with 200, bytes that are not HTTP, ±Inf, a
  redirect...). ``release()`` ends the hanging ones; ``requests`` and ``in_flight``
  say what reached it.
- ``Gateway``: a reverse proxy in front of a real Prometheus, as Thanos, Mimir or an
  auth proxy put it: it serves TLS with a certificate of a CA made for the test,
  requires a bearer token or basic auth and given headers (a tenant), and answers
  401/403 like such gateways do. It records the headers every request came with.
- ``make_certificates``: a CA and a server certificate for 127.0.0.1, with the
  ``openssl`` command line.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gzip
import json
import pathlib
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Self

import aiohttp
from aiohttp import web

# Text an impostor puts in its bodies: a test asserts it never reaches a status, an Event or a log.
SECRET_MARKER = "internal-secret-7f3a"

BEHAVIOURS = (
    "hang",  # reads the request, never answers
    "trickle",  # a valid-looking answer, one byte per `trickle_seconds`
    "huge",  # 32 MiB of JSON-looking bytes, no Content-Length
    "huge-declared",  # a Content-Length of 32 MiB, and the bytes
    "html",  # 200 with an HTML page
    "not-http",  # bytes that are not an HTTP response at all
    "garbage-json",  # 200, Content-Type application/json, a body that is not JSON
    "wrong-shape",  # 200, JSON, not a Prometheus query result
    "matrix",  # a range vector where one number was asked for
    "+Inf",
    "-Inf",
    "NaN",
    "redirect",  # 302 to `redirect_to`
    "error-500",  # 500 with a body quoting the marker
    "gzip",  # a gzip-compressed body nobody asked for
    "endless-headers",  # 200, then header lines without end
)
_HUGE = 32 * 1024 * 1024


def _vector(value: str) -> bytes:
    result = [{"metric": {}, "value": [0, value]}]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def _answer(body: bytes, status: str = "200 OK", content_type: str = "application/json", extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra}"
    return (head + "Connection: close\r\n\r\n").encode() + body


class _ThreadServer:
    """An asyncio server on 127.0.0.1 in a thread with its own event loop."""

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None

    async def _serve(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        await self._serve()

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"{type(self).__name__} did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Impostor(_ThreadServer):
    def __init__(self, behaviour: str, *, trickle_seconds: float = 1.0, redirect_to: str = "") -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; known: {', '.join(BEHAVIOURS)}")
        super().__init__()
        self.behaviour = behaviour
        self.trickle_seconds = trickle_seconds
        self.redirect_to = redirect_to
        self.requests = 0
        self.in_flight = 0
        self.bytes_sent = 0
        self._released: asyncio.Event | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def release(self) -> None:
        """End every hanging or trickling answer (the connection is closed without an answer)."""
        if self._loop is not None and self._released is not None:
            self._loop.call_soon_threadsafe(self._released.set)

    async def _serve(self) -> None:
        self._released = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        assert self._stopping is not None
        async with server:
            await self._stopping.wait()
            self._released.set()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.requests += 1
        self.in_flight += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            await self._behave(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up: what a bounded client does
        finally:
            self.in_flight -= 1
            self._handlers.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()
        self.bytes_sent += len(data)

    async def _behave(self, writer: asyncio.StreamWriter) -> None:
        assert self._released is not None
        kind = self.behaviour
        if kind == "hang":
            await self._released.wait()
        elif kind == "trickle":
            body = _vector("0.5")
            data = _answer(body)
            head, rest = data[: data.index(b"\r\n\r\n") + 4], data[data.index(b"\r\n\r\n") + 4 :]
            await self._send(writer, head)
            for i in range(len(rest)):
                await self._send(writer, rest[i : i + 1])
                try:
                    await asyncio.wait_for(self._released.wait(), self.trickle_seconds)
                    return
                except TimeoutError:
                    continue
        elif kind in ("huge", "huge-declared"):
            length = f"Content-Length: {_HUGE}\r\n" if kind == "huge-declared" else ""
            await self._send(writer, f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}\r\n".encode())
            chunk = b'{"status":"success","data":' + b" " * (64 * 1024 - 27)
            for _ in range(_HUGE // len(chunk)):
                await self._send(writer, chunk)
        elif kind == "html":
            page = f"<html><body><h1>Admin console</h1><p>{SECRET_MARKER}</p></body></html>".encode()
            await self._send(writer, _answer(page, content_type="text/html; charset=utf-8"))
        elif kind == "not-http":
            await self._send(writer, f"\x00\xff\x13{SECRET_MARKER} SSH-2.0-OpenSSH\r\n\r\n".encode("latin-1"))
        elif kind == "garbage-json":
            await self._send(writer, _answer(f"{{{SECRET_MARKER}: [1, 2,".encode()))
        elif kind == "wrong-shape":
            shape = {"status": "success", "data": {"resultType": "vector", "result": [{"value": SECRET_MARKER}]}}
            await self._send(writer, _answer(json.dumps(shape).encode()))
        elif kind == "matrix":
            result = [{"metric": {}, "values": [[0, "1"], [1, "2"]]}]
            matrix = {"status": "success", "data": {"resultType": "matrix", "result": result}}
            await self._send(writer, _answer(json.dumps(matrix).encode()))
        elif kind in ("+Inf", "-Inf", "NaN"):
            await self._send(writer, _answer(_vector(kind)))
        elif kind == "redirect":
            await self._send(writer, _answer(b"", "302 Found", extra=f"Location: {self.redirect_to}\r\n"))
        elif kind == "error-500":
            body = json.dumps({"status": "error", "errorType": "internal", "error": SECRET_MARKER}).encode()
            await self._send(writer, _answer(body, "500 Internal Server Error"))
        elif kind == "endless-headers":
            await self._send(writer, b"HTTP/1.1 200 OK\r\n")
            for i in range(1_000_000):
                await self._send(writer, f"X-{i}: {SECRET_MARKER}{'x' * 4000}\r\n".encode())
        elif kind == "gzip":
            await self._send(writer, _answer(gzip.compress(_vector("1")), extra="Content-Encoding: gzip\r\n"))


@dataclasses.dataclass(frozen=True)
class Certificates:
    ca_pem: str
    cert_file: pathlib.Path
    key_file: pathlib.Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_certificates(directory: pathlib.Path, host: str = "127.0.0.1") -> Certificates:
    """A CA made for the test, and a certificate it signed for ``host`` (an IP address), via openssl."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=canary-bench test CA",
        "-keyout", "ca.key", "-out", "ca.crt",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}", "-keyout", "server.key", "-out", "server.csr"
    )
    (directory / "server.ext").write_text(
        f"subjectAltName=IP:{host}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-out", "server.crt", "-extfile", "server.ext",
    )  # fmt: skip
    return Certificates((directory / "ca.crt").read_text(), directory / "server.crt", directory / "server.key")


Check = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


class Gateway(_ThreadServer):
    """A reverse proxy to a real Prometheus that demands credentials, headers and (optionally) TLS."""

    def __init__(
        self,
        upstream: str,
        *,
        token: str | None = None,
        basic: tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
        certificates: Certificates | None = None,
        prefix: str = "",
    ) -> None:
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self.expected = None
        if token is not None:
            self.expected = f"Bearer {token}"
        elif basic is not None:
            self.expected = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        self.required_headers = dict(headers or {})
        self.certificates = certificates
        self.prefix = prefix.rstrip("/")
        self.seen: list[dict[str, str]] = []  # the headers of every request, in order
        self.connections: set[tuple[str, int]] = set()  # the client ends of the TCP connections requests came on

    @property
    def url(self) -> str:
        scheme = "https" if self.certificates is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}{self.prefix}"

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(dict(request.headers))
        if request.transport is not None:
            self.connections.add(tuple(request.transport.get_extra_info("peername")[:2]))
        given = request.headers.get("Authorization")
        if self.expected is not None and given is None:
            return web.json_response({"status": "error", "error": "authentication required"}, status=401)
        if self.expected is not None and given != self.expected:
            return web.json_response({"status": "error", "error": "bad credentials"}, status=403)
        for name, value in self.required_headers.items():
            if request.headers.get(name) != value:
                return web.json_response({"status": "error", "error": f"{name} missing or wrong"}, status=401)
        path = request.path.removeprefix(self.prefix)
        query = urllib.parse.urlencode(list(request.query.items()))
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.upstream}{path}?{query}") as upstream:
                body = await upstream.read()
                return web.Response(body=body, status=upstream.status, content_type="application/json")

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._proxy)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        context = self.certificates.server_context() if self.certificates is not None else None
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._ready.set()
        assert self._stopping is not None
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()
