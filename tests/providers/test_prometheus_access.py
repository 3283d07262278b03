"""Reaching a Prometheus as real setups put it: behind auth, TLS with a private CA, tenant headers, an allow-list.

The Prometheus is real (backfilled, exact values); in front of it stands a
gateway (``canary_bench.impostors.Gateway``) that demands what a Thanos, Mimir
or auth proxy would. Secrets live in the emulated cluster and are read through
the operator's own API client, as the operator does at every check.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from canary_bench import cluster as clusters
from canary_bench import impostors, prometheus
from canary_operator import config, endpoints, kube, models, providers
from canary_operator.providers import prometheus as prometheus_provider

START = prometheus.EPOCH
AT = datetime.datetime.fromtimestamp(START + 600, tz=datetime.UTC)
TOKEN = "s3cr3t-token-value"
TENANT = {"X-Scope-OrgID": "team-a"}
QUERY = 'sum(rate(http_requests_total{namespace="shop"}[1m]))'

Start = Callable[..., prometheus.PrometheusServer]
NO_DEFAULTS = config.PrometheusSettings()


@pytest.fixture
def upstream(backfill_prometheus: Start) -> prometheus.PrometheusServer:
    series = prometheus.request_series(
        "shop", "web-primary-7c9d8f6b5-q8w3z", start=START, end=START + 900, step=5, rps=45
    )
    return backfill_prometheus(series)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> impostors.Certificates:
    return impostors.make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def gateway(upstream: prometheus.PrometheusServer) -> Iterator[Callable[..., impostors.Gateway]]:
    started: list[impostors.Gateway] = []

    def start(**options: Any) -> impostors.Gateway:
        server = impostors.Gateway(upstream.url, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def secret(cluster: clusters.EmulatedCluster, name: str, **data: str) -> None:
    encoded = {key.replace("_", "."): base64.b64encode(value.encode()).decode() for key, value in data.items()}
    cluster.create(
        "/api/v1/namespaces/shop/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded},
    )


async def value_through(
    pool: prometheus_provider.Pool,
    api: kube.Client,
    spec: models.PrometheusSpec,
    settings: config.PrometheusSettings = NO_DEFAULTS,
) -> float:
    endpoint = await endpoints.endpoint(api, "shop", spec, settings)
    return await pool.provider(endpoint).query(QUERY, AT)


# ---------------------------------------------------------------- credentials, TLS and headers per rollout


async def test_a_bearer_token_over_tls_with_a_private_ca_and_a_tenant_header(
    gateway: Callable[..., impostors.Gateway],
    certificates: impostors.Certificates,
    cluster: clusters.EmulatedCluster,
    api: kube.Client,
    pool: prometheus_provider.Pool,
) -> None:
    front = gateway(token=TOKEN, headers=TENANT, certificates=certificates, prefix="/prometheus")
    secret(cluster, "prom-auth", token=TOKEN + "\n", ca_crt=certificates.ca_pem)
    spec = models.PrometheusSpec(address=front.url, secret_ref={"name": "prom-auth"}, headers=TENANT)
    assert await value_through(pool, api, spec) == pytest.approx(45)
    assert front.seen[-1]["Authorization"] == f"Bearer {TOKEN}" and front.seen[-1]["X-Scope-OrgID"] == "team-a"


async def test_the_checks_of_many_rollouts_share_a_few_kept_alive_connections(
    gateway: Callable[..., impostors.Gateway],
    certificates: impostors.Certificates,
    cluster: clusters.EmulatedCluster,
    api: kube.Client,
    pool: prometheus_provider.Pool,
) -> None:
    front = gateway(token=TOKEN, certificates=certificates)
    secret(cluster, "prom-auth", token=TOKEN, ca_crt=certificates.ca_pem)
    spec = models.PrometheusSpec(address=front.url, secret_ref={"name": "prom-auth"})
    for _rollout in range(10):  # one check each, one after the other, as ten rollouts' daemons would
        provider = pool.provider(await endpoints.endpoint(api, "shop", spec, NO_DEFAULTS))
        values = await asyncio.gather(*(provider.query(QUERY, AT) for _ in range(8)))
        assert values == [pytest.approx(45)] * 8
    assert len(front.seen) == 80
    assert len(front.connections) <= pool.concurrency, "80 queries over at most 4 TLS connections, kept alive"


async def test_basic_auth_from_a_secret(
    gateway: Callable[..., impostors.Gateway],
    cluster: clusters.EmulatedCluster,
    api: kube.Client,
    pool: prometheus_provider.Pool,
) -> None:
    front = gateway(basic=("reader", "pa:ss"))
    secret(cluster, "prom-basic", username="reader", password="pa:ss")
    spec = models.PrometheusSpec(address=front.url, secret_ref={"name": "prom-basic"})
    assert await value_through(pool, api, spec) == pytest.approx(45)


async def test_a_server_certificate_from_an_unknown_ca_is_refused_and_accepted_with_insecure_skip_verify(
    gateway: Callable[..., impostors.Gateway],
    certificates: impostors.Certificates,
    api: kube.Client,
    pool: prometheus_provider.Pool,
) -> None:
    front = gateway(certificates=certificates)
    with pytest.raises(providers.UnreachableError, match="TLS certificate not trusted"):
        await value_through(pool, api, models.PrometheusSpec(address=front.url))
    assert front.seen == [], "no request went over an unverified connection"
    insecure = models.PrometheusSpec(address=front.url, insecure_skip_verify=True)
    assert await value_through(pool, api, insecure) == pytest.approx(45)


async def test_a_wrong_token_is_a_query_error_that_never_shows_the_token(
    gateway: Callable[..., impostors.Gateway],
    cluster: clusters.EmulatedCluster,
    api: kube.Client,
    pool: prometheus_provider.Pool,
) -> None:
    front = gateway(token=TOKEN)
    secret(cluster, "stale", token="an-old-rotated-token")
    with pytest.raises(providers.QueryError) as caught:
        await value_through(pool, api, models.PrometheusSpec(address=front.url, secret_ref={"name": "stale"}))
    assert "refused the credentials (HTTP 403)" in str(caught.value)
    assert "an-old-rotated-token" not in str(caught.value)


async def test_a_rotated_token_is_used_at_the_next_check(
    gateway: Callable[..., impostors.Gateway],
    cluster: clusters.EmulatedCluster,
    api: kube.Client,
    pool: prometheus_provider.Pool,
) -> None:
    front = gateway(token=TOKEN)
    secret(cluster, "rotating", token="before-rotation")
    spec = models.PrometheusSpec(address=front.url, secret_ref={"name": "rotating"})
    with pytest.raises(providers.QueryError):
        await value_through(pool, api, spec)
    cluster.replace(
        "/api/v1/namespaces/shop/secrets/rotating",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "rotating"},
            "data": {"token": base64.b64encode(TOKEN.encode()).decode()},
        },
    )
    assert await value_through(pool, api, spec) == pytest.approx(45)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (None, "Secret shop/prom (analysis.prometheus.secretRef) does not exist"),
        ({"unrelated": "value-0"}, "has none of the keys token, username, password, ca.crt"),
        ({"token": "value-1", "username": "value-2", "password": "value-3"}, "has both token and username/password"),
        ({"username": "value-4"}, "needs both username and password"),
        ({"token": "value-5\nvalue-6"}, "token must be one line of printable text"),
        ({"token": "value-7", "ca_crt": "value-8"}, "ca.crt is not a PEM certificate"),
    ],
    ids=["missing", "no-known-key", "token-and-basic", "half-basic", "multi-line", "bad-ca"],
)
async def test_an_unusable_secret_is_a_credentials_error_naming_the_key_not_the_value(
    cluster: clusters.EmulatedCluster, api: kube.Client, data: dict[str, str] | None, words: str
) -> None:
    if data is not None:
        secret(cluster, "prom", **data)
    spec = models.PrometheusSpec(address="http://prometheus.monitoring:9090", secret_ref={"name": "prom"})
    with pytest.raises(endpoints.CredentialsError) as caught:
        await endpoints.endpoint(api, "shop", spec, config.PrometheusSettings())
    assert words in str(caught.value)
    assert caught.value.reason == "PrometheusCredentials"
    for value in (data or {}).values():
        assert value not in str(caught.value)


def test_a_displayed_url_has_no_user_password_query_or_fragment() -> None:
    assert (
        providers.display_url("https://reader:hunter2@mimir:8443/prometheus?x=1#f") == "https://mimir:8443/prometheus"
    )
    assert providers.display_url("http://[::1]:9090") == "http://[::1]:9090"


def test_an_endpoint_never_shows_its_credentials() -> None:
    endpoint = providers.Endpoint("https://prometheus:9090", authorization=f"Bearer {TOKEN}", ca_pem="PEM")
    assert TOKEN not in repr(endpoint) and TOKEN not in str(endpoint)


# ---------------------------------------------------------------- operator defaults


def credentials_dir(tmp_path: pathlib.Path, **files: str) -> pathlib.Path:
    for name, text in files.items():
        (tmp_path / name.replace("_", ".")).write_text(text)
    return tmp_path


async def test_a_rollout_without_prometheus_uses_the_operators_address_credentials_and_headers(
    gateway: Callable[..., impostors.Gateway],
    certificates: impostors.Certificates,
    api: kube.Client,
    pool: prometheus_provider.Pool,
    tmp_path: pathlib.Path,
) -> None:
    front = gateway(token=TOKEN, headers=TENANT, certificates=certificates)
    settings = config.PrometheusSettings(
        address=front.url,
        credentials_dir=credentials_dir(tmp_path, token=TOKEN, ca_crt=certificates.ca_pem),
        headers=tuple(TENANT.items()),
    )
    analysis_without_prometheus = models.PrometheusSpec()
    assert await value_through(pool, api, analysis_without_prometheus, settings) == pytest.approx(45)


async def test_the_operators_credentials_are_never_sent_to_an_address_a_rollout_chose(
    gateway: Callable[..., impostors.Gateway],
    api: kube.Client,
    pool: prometheus_provider.Pool,
    tmp_path: pathlib.Path,
) -> None:
    official = gateway(token=TOKEN, headers=TENANT)
    elsewhere = gateway()  # the tenant's own server: it records what it was sent
    settings = config.PrometheusSettings(
        address=official.url, credentials_dir=credentials_dir(tmp_path, token=TOKEN), headers=tuple(TENANT.items())
    )
    assert await value_through(pool, api, models.PrometheusSpec(address=elsewhere.url), settings) == pytest.approx(45)
    assert "Authorization" not in elsewhere.seen[-1] and "X-Scope-OrgID" not in elsewhere.seen[-1]


async def test_a_rollouts_timeout_is_capped_by_the_operators_maximum(api: kube.Client) -> None:
    settings = config.PrometheusSettings(address="http://prometheus:9090", timeout=10, max_timeout=30)
    assert (await endpoints.endpoint(api, "shop", models.PrometheusSpec(), settings)).timeout == 10
    long = models.PrometheusSpec(timeout="10m")
    assert (await endpoints.endpoint(api, "shop", long, settings)).timeout == 30


# ---------------------------------------------------------------- the allow-list (SSRF control)

ALLOWED = config.PrometheusSettings(
    address="http://prometheus.monitoring:9090",
    allowed_addresses=("http://thanos.monitoring:10902", "https://mimir.example.com/prometheus"),
)


@pytest.mark.parametrize(
    "address",
    [
        None,  # the operator's default
        "http://prometheus.monitoring:9090",
        "http://thanos.monitoring:10902",
        "http://THANOS.monitoring:10902/",
        "https://mimir.example.com/prometheus",
        "https://mimir.example.com:443/prometheus/tenant-a",
    ],
)
def test_an_allowed_address_passes(address: str | None) -> None:
    endpoints.address(models.PrometheusSpec(address=address), ALLOWED)


@pytest.mark.parametrize(
    "address",
    [
        "http://169.254.169.254",  # a cloud metadata service
        "http://kubernetes.default.svc",
        "http://thanos.monitoring:10903",  # another port
        "https://thanos.monitoring:10902",  # another scheme
        "http://thanos.monitoring.evil.example:10902",
        "https://mimir.example.com/prometheus-admin",  # a sibling path, not below
        "https://mimir.example.com/",
        "http://2130706433:9090",  # 127.0.0.1 spelt as a number
    ],
)
def test_an_address_outside_the_allow_list_is_refused_before_any_request(address: str) -> None:
    with pytest.raises(endpoints.NotAllowedError) as caught:
        endpoints.address(models.PrometheusSpec(address=address), ALLOWED)
    assert caught.value.reason == "PrometheusNotAllowed"
    assert "is not allowed by the operator" in str(caught.value)


async def test_a_refused_address_is_never_contacted(api: kube.Client) -> None:
    with impostors.Impostor("html") as target:
        source = endpoints.Source(config.PrometheusSettings(allowed_addresses=("http://prometheus:9090",)))
        analysis = models.Analysis(
            prometheus=models.PrometheusSpec(address=target.url),
            metrics=[models.Metric(name="e", template=models.MetricTemplate.ERROR_RATE, max=1)],
        )
        with pytest.raises(endpoints.NotAllowedError):
            source.check(analysis)
        with pytest.raises(endpoints.NotAllowedError):
            await source.provider(api, "shop", analysis)
        await source.close()
        assert target.requests == 0


def test_without_any_address_the_rollout_is_told_so() -> None:
    with pytest.raises(endpoints.NoAddressError, match="no default Prometheus address") as caught:
        endpoints.address(models.PrometheusSpec(), config.PrometheusSettings())
    assert caught.value.reason == "PrometheusAddressMissing"
