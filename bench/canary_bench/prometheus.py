"""A real Prometheus for tests, the demo and benchmarks, live or backfilled.

The operator's verdicts hinge on PromQL semantics (rate extrapolation, histogram_quantile interpolation,
staleness, empty results), so the bench never fakes them: it runs the real ``prometheus`` binary.

Two ways to feed it:

* live: `PrometheusServer(scrape_targets=[exporter.address])` scrapes the traffic simulator's exporter;
  the first samples arrive about 6 s after start (Prometheus applies new targets on a 5 s tick);
* backfilled: `backfilled_prometheus()` writes series with exact values into blocks with
  ``promtool tsdb create-blocks-from openmetrics`` and serves them; queries at a fixed ``time=`` then
  have exact, deterministic answers, with no waiting.

Backfilled samples must lie in the past: Prometheus rejects live samples older than its newest block,
so data in the future would also block scraping. `EPOCH` is a 2h-aligned instant long past that tests
can build on; a rate is exact when its whole window lies between a series' first and last sample.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self

import yaml

from canary_bench import traffic

# 2023-11-14T22:00:00Z: a block boundary (Prometheus cuts blocks every 2 h) far enough in the past.
EPOCH = 1_699_999_200.0

BLOCK_SECONDS = 2 * 3600

INSTALL_HINT = "run `make deps` (it installs the Debian package: apt-get install prometheus)"

Kind = Literal["counter", "gauge", "histogram", "unknown"]


class PrometheusMissing(RuntimeError):
    """The prometheus or promtool binary is not installed."""


class PrometheusError(RuntimeError):
    """Prometheus did not start, or a query failed."""


def require_binary(name: str) -> str:
    """The path of a Prometheus tool, or a clear error telling how to install it."""
    path = shutil.which(name) if os.sep not in name else (name if os.access(name, os.X_OK) else None)
    if path is None:
        raise PrometheusMissing(f"{name!r} is not installed or not on PATH: {INSTALL_HINT}")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free right now (another process may still take it before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def aligned_past(hours_ago: float = 4.0) -> float:
    """A 2h block boundary at least `hours_ago` before now: for data that must look recent."""
    moment = time.time() - hours_ago * 3600
    return float(moment - moment % BLOCK_SECONDS)


class PrometheusServer:
    """One ``prometheus`` process on loopback, with its own config, storage and log in a temp dir.

    `stop()` and `start()` again keep the port and the storage, like a Prometheus pod restarting;
    `close()` (or leaving the ``with`` block) stops it and deletes the temp dir.
    """

    def __init__(
        self,
        *,
        scrape_targets: Sequence[str] = (),
        scrape_interval: str = "1s",
        evaluation_interval: str | None = None,
        retention: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        ready_timeout: float = 10.0,
        binary: str = "prometheus",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = require_binary(binary)
        self.scrape_targets = list(scrape_targets)
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval or scrape_interval
        self.retention = retention
        self.host = host
        self.port = port or free_port(host)
        self.ready_timeout = ready_timeout
        self.extra_args = list(extra_args)
        self.workdir = Path(tempfile.mkdtemp(prefix="canary-bench-prometheus-"))
        self.storage_dir = self.workdir / "data"
        self.storage_dir.mkdir()
        self.config_file = self.workdir / "prometheus.yml"
        self.log_file = self.workdir / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def config(self) -> dict[str, Any]:
        """The Prometheus configuration: one static job over the scrape targets."""
        scrape_configs = (
            [
                {
                    "job_name": "canary-bench",
                    "honor_labels": True,  # the exporter's namespace/pod labels stand, as if from service discovery
                    "scrape_interval": self.scrape_interval,
                    "scrape_timeout": self.scrape_interval,
                    "static_configs": [{"targets": self.scrape_targets}],
                }
            ]
            if self.scrape_targets
            else []
        )
        return {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.evaluation_interval},
            "scrape_configs": scrape_configs,
        }

    def start(self) -> Self:
        """Start (or restart) the process and wait until it answers ``/-/ready``."""
        if self.running:
            return self
        self.config_file.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        args = [
            self.binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.storage_dir}",
            f"--web.listen-address={self.host}:{self.port}",
            "--web.enable-lifecycle",
            *([f"--storage.tsdb.retention.time={self.retention}"] if self.retention else []),
            *self.extra_args,
        ]
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        self._wait_ready()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process (gracefully, then by force); storage and port stay for a later `start()`."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def set_scrape_targets(self, targets: Sequence[str]) -> None:
        """Change what is scraped; a running server reloads its configuration."""
        self.scrape_targets = list(targets)
        if self.running:
            self.config_file.write_text(yaml.safe_dump(self.config(), sort_keys=False))
            self._request("/-/reload", method="POST")

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's result list (``[{"metric": {...}, "value": [ts, "v"]}, ...]``)."""
        params = {"query": expr, **({"time": repr(at)} if at is not None else {})}
        body = json.loads(self._request("/api/v1/query?" + urllib.parse.urlencode(params)))
        if body.get("status") != "success":
            raise PrometheusError(f"query {expr!r} failed: {body}")
        if body["data"]["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": body["data"]["result"]}]
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def query_value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of a query, or None if it has no result; several results are an error."""
        result = self.query(expr, at)
        if len(result) > 1:
            raise PrometheusError(f"query {expr!r} returned {len(result)} series, expected one: {result}")
        return float(result[0]["value"][1]) if result else None

    def wait_for_value(
        self,
        expr: str,
        accept: Callable[[float], bool],
        *,
        timeout: float = 20.0,
        interval: float = 0.25,
    ) -> float:
        """Poll a live query until its value is accepted; the deadline error shows the last answer."""
        deadline = time.monotonic() + timeout
        value: float | None = None
        while True:
            value = self.query_value(expr)
            if value is not None and accept(value):
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{expr!r} still answered {value} after {timeout} s")
            time.sleep(interval)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def _request(self, path: str, *, method: str = "GET") -> str:
        request = urllib.request.Request(self.url + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                data: bytes = response.read()
                return data.decode()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            e.close()
            raise PrometheusError(f"{method} {path}: HTTP {e.code}: {detail}") from e

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if not self.running:
                self._process = None
                raise PrometheusError(f"prometheus exited during startup:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() >= deadline:
                self.stop()
                raise PrometheusError(f"prometheus not ready after {self.ready_timeout} s:\n{self.log_tail()}")
            time.sleep(0.02)


@dataclasses.dataclass(frozen=True)
class Series:
    """One series to backfill: its sample name (with ``_total``/``_bucket``/... suffix), labels, samples."""

    name: str
    labels: Mapping[str, str]
    samples: Sequence[tuple[float, float]]  # (unix seconds, value), in time order
    kind: Kind = "gauge"

    @property
    def family(self) -> str:
        """The metric family name of the ``# TYPE`` line: the sample name without its type's suffix."""
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(self.kind, ())
        for suffix in suffixes:
            if self.name.endswith(suffix):
                return self.name.removesuffix(suffix)
        if suffixes:
            raise ValueError(f"a {self.kind} sample name must end with one of {suffixes}: {self.name!r}")
        return self.name


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render_openmetrics(series: Iterable[Series], raw: str = "") -> str:
    """OpenMetrics text for promtool: `raw` text first, then the series grouped by family, then ``# EOF``.

    A family must not appear both in `raw` and in `series` (OpenMetrics forbids interleaved families).
    """
    families: dict[str, list[Series]] = collections.defaultdict(list)
    kinds: dict[str, Kind] = {}
    for one in series:
        if kinds.setdefault(one.family, one.kind) != one.kind:
            raise ValueError(f"family {one.family!r} is both {kinds[one.family]} and {one.kind}")
        families[one.family].append(one)

    lines = [line for line in raw.strip().splitlines() if line.strip() != "# EOF"]
    for family, members in families.items():
        lines.append(f"# TYPE {family} {kinds[family]}")
        for one in members:
            labels = ",".join(f'{key}="{_escape(value)}"' for key, value in one.labels.items())
            selector = f"{one.name}{{{labels}}}" if labels else one.name
            lines.extend(f"{selector} {_number(value)} {timestamp:.3f}" for timestamp, value in one.samples)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def backfill(storage_dir: Path, openmetrics: str, *, promtool: str = "promtool") -> None:
    """Write OpenMetrics text into TSDB blocks in `storage_dir` (which Prometheus must not be running on)."""
    source = Path(tempfile.mkdtemp(prefix="canary-bench-openmetrics-")) / "data.om"
    try:
        source.write_text(openmetrics)
        completed = subprocess.run(
            [require_binary(promtool), "tsdb", "create-blocks-from", "openmetrics", str(source), str(storage_dir)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        shutil.rmtree(source.parent, ignore_errors=True)
    if completed.returncode != 0:
        raise PrometheusError(f"promtool backfill failed ({completed.returncode}):\n{completed.stderr.strip()}")


def backfilled_prometheus(
    series: Iterable[Series] = (),
    *,
    openmetrics: str = "",
    **server_options: Any,
) -> PrometheusServer:
    """A started Prometheus serving the given series and/or raw OpenMetrics text, kept for 100 years.

    Use it as a context manager (``with backfilled_prometheus(...) as prometheus:``) and query at fixed
    times with ``prometheus.query(expr, at=...)``.
    """
    server = PrometheusServer(retention="100y", **server_options)
    try:
        backfill(server.storage_dir, render_openmetrics(series, openmetrics))
        return server.start()
    except BaseException:
        server.close()
        raise


DEFAULT_LATENCY = traffic.FixedLatency(0.02)


def _timestamps(start: float, end: float, step: float) -> list[float]:
    if step <= 0 or end < start:
        raise ValueError(f"need step > 0 and end >= start, got start={start}, end={end}, step={step}")
    return [start + index * step for index in range(int((end - start) / step + 1e-9) + 1)]


def request_series(
    namespace: str,
    pod: str,
    *,
    start: float,
    end: float,
    step: float = 15.0,
    rps: float,
    error_ratio: float = 0.0,
    latency: traffic.LatencyDistribution = DEFAULT_LATENCY,
    buckets: Sequence[float] = traffic.LATENCY_BUCKETS,
) -> list[Series]:
    """The RED series one pod would have exported while serving `rps` steadily from `start` to `end`.

    Counters start at 0 at `start` and grow linearly, so ``rate(...[w])`` at any time in
    [start + w, end] is exactly `rps` (times the code's share), and ``histogram_quantile`` answers what
    the latency distribution's buckets imply (see `traffic.DiscreteLatency.with_quantile`). As with a real
    exporter, there is no ``code="500"`` series when no request failed.
    """
    times = _timestamps(start, end, step)

    def counter(name: str, labels: Mapping[str, str], share: float, kind: Kind) -> Series:
        return Series(name, labels, [(t, rps * share * (t - start)) for t in times], kind)

    pod_labels = {"namespace": namespace, "pod": pod}
    requests = traffic.REQUESTS_METRIC
    codes = {traffic.SUCCESS_CODE: 1.0 - error_ratio, traffic.ERROR_CODE: error_ratio}
    result = [
        counter(requests, {**pod_labels, "code": code}, share, "counter") for code, share in codes.items() if share > 0
    ]
    histogram = traffic.LATENCY_METRIC
    for bound in (*sorted(buckets), math.inf):
        le = "+Inf" if math.isinf(bound) else repr(float(bound))  # as prometheus_client spells it
        share = 1.0 if math.isinf(bound) else latency.share_within(bound)
        result.append(counter(f"{histogram}_bucket", {**pod_labels, "le": le}, share, "histogram"))
    result.append(counter(f"{histogram}_count", pod_labels, 1.0, "histogram"))
    result.append(counter(f"{histogram}_sum", pod_labels, latency.mean(), "histogram"))
    return result
