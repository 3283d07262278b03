"""The operator's settings: read once from the environment, every bad value named at startup."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from canary_operator import config, peering


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = config.from_environ({})
    assert settings == config.Settings()
    assert (settings.tick_seconds, settings.idle_tick_seconds, settings.http_port) == (1, 30, 8080)
    assert settings.prometheus.address is None and settings.prometheus.allowed_addresses == ()
    assert (settings.prometheus.timeout, settings.prometheus.max_timeout) == (10, 30)


def test_every_variable_is_read(tmp_path: pathlib.Path) -> None:
    settings = config.from_environ(
        {
            "CANARY_TICK_SECONDS": "0.5",
            "CANARY_IDLE_TICK_SECONDS": "10",
            "CANARY_LOG_FORMAT": "console",
            "CANARY_HTTP_PORT": "0",
            "CANARY_HTTP_HOST": "127.0.0.1",
            "CANARY_PROMETHEUS_ADDRESS": "http://prometheus.monitoring:9090/",
            "CANARY_PROMETHEUS_TIMEOUT": "5s",
            "CANARY_PROMETHEUS_MAX_TIMEOUT": "1m",
            "CANARY_PROMETHEUS_MAX_RESPONSE_BYTES": "65536",
            "CANARY_PROMETHEUS_CONCURRENCY": "2",
            "CANARY_PROMETHEUS_ALLOWED_ADDRESSES": "http://a:9090, https://b/prometheus",
            "CANARY_PROMETHEUS_CREDENTIALS_DIR": str(tmp_path),
            "CANARY_PROMETHEUS_INSECURE_SKIP_VERIFY": "true",
            "CANARY_PROMETHEUS_HEADERS": '{"X-Scope-OrgID": "platform"}',
            "CANARY_WEBHOOK_ALLOWED_URLS": "https://hooks.slack.com/services, http://smoke.qa:8080",
            "CANARY_PEERING": "canary-operator",
            "CANARY_PEERING_LIFETIME": "20",
            "CANARY_PEERING_PRIORITY": "7",
        }
    )
    assert settings == config.Settings(
        tick_seconds=0.5,
        idle_tick_seconds=10,
        log_format="console",
        http_port=0,
        http_host="127.0.0.1",
        prometheus=config.PrometheusSettings(
            address="http://prometheus.monitoring:9090",
            timeout=5,
            max_timeout=60,
            max_response_bytes=65536,
            concurrency=2,
            allowed_addresses=("http://a:9090", "https://b/prometheus"),
            credentials_dir=tmp_path,
            insecure_skip_verify=True,
            headers=(("X-Scope-OrgID", "platform"),),
        ),
        webhook_allowed_urls=("https://hooks.slack.com/services", "http://smoke.qa:8080"),
        peering=peering.Peering(name="canary-operator", priority=7, lifetime=20),
    )


def test_every_bad_value_is_named_at_once() -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.from_environ(
            {
                "CANARY_TICK_SECONDS": "fast",
                "CANARY_IDLE_TICK_SECONDS": "0",
                "CANARY_LOG_FORMAT": "xml",
                "CANARY_HTTP_PORT": "70000",
                "CANARY_PROMETHEUS_ADDRESS": "http://user:secret-password@prometheus:9090",
                "CANARY_PROMETHEUS_TIMEOUT": "9999999999w",
                "CANARY_PROMETHEUS_ALLOWED_ADDRESSES": "prometheus:9090",
                "CANARY_PROMETHEUS_CREDENTIALS_DIR": "/nonexistent/credentials",
                "CANARY_PROMETHEUS_INSECURE_SKIP_VERIFY": "maybe",
                "CANARY_PROMETHEUS_HEADERS": '{"Authorization": "x"}',
                "CANARY_PROMETHEUS_CONCURRENCY": "0",
                "CANARY_WEBHOOK_ALLOWED_URLS": "hooks.slack.com",
                "CANARY_PEERING": "canary-operator",
                "CANARY_PEERING_LIFETIME": "1",
            }
        )
    message = str(caught.value)
    for words in (
        "CANARY_TICK_SECONDS='fast'",
        "CANARY_IDLE_TICK_SECONDS='0': must be a number above 0",
        "CANARY_LOG_FORMAT='xml': must be json or console",
        "CANARY_HTTP_PORT='70000': must be an integer from 0 to 65535",
        "must not hold credentials",
        "CANARY_PROMETHEUS_TIMEOUT='9999999999w': must be a duration above 0s and at most 86400s",
        "CANARY_PROMETHEUS_ALLOWED_ADDRESSES='prometheus:9090': must be an http:// or https:// URL",
        "CANARY_PROMETHEUS_CREDENTIALS_DIR='/nonexistent/credentials': not a directory",
        "CANARY_PROMETHEUS_INSECURE_SKIP_VERIFY='maybe': must be true or false",
        "is set by the operator",
        "CANARY_PROMETHEUS_CONCURRENCY='0': must be an integer from 1 to 64",
        "CANARY_WEBHOOK_ALLOWED_URLS='hooks.slack.com': must be an http:// or https:// URL",
        "CANARY_PEERING_LIFETIME='1': must be an integer from 2 to 3600",
    ):
        assert words in message


def test_a_timeout_above_the_maximum_is_refused() -> None:
    with pytest.raises(config.ConfigError, match=r"TIMEOUT \(60s\) is above CANARY_PROMETHEUS_MAX_TIMEOUT \(30s\)"):
        config.from_environ({"CANARY_PROMETHEUS_TIMEOUT": "1m"})


def test_the_operator_refuses_to_start_on_a_bad_setting_and_says_why() -> None:
    env = {"CANARY_TICK_SECONDS": "-1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "canary_operator"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "canary-operator: invalid operator settings: CANARY_TICK_SECONDS='-1'" in done.stderr
