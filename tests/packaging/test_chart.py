"""The Helm chart, rendered and linted by the real Helm library, checked against Kubernetes' own schemas.

``helm_python`` binds Helm v4's Go SDK: ``Chart.render`` is ``helm template`` and ``lint`` is
``helm lint``, both enforcing ``values.schema.json`` exactly as an install would.
``kubernetes_validate`` holds the OpenAPI schemas of each Kubernetes release; in strict mode a
misspelt or misplaced field fails, as ``kubectl apply --validate=strict`` would. The Prometheus
Operator's kinds (ServiceMonitor, PrometheusRule) are checked against the part of its CRDs the
chart uses.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import helpers
import jsonschema
import kubernetes_validate
import pytest
import yaml

from canary_operator import config, peering

CHART = helpers.ROOT / "charts" / "canary-operator"
KUBERNETES = "1.30"
RELEASE = "canary"
NAMESPACE = "canary-system"
MONITORING = {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}, "dashboards": {"enabled": True}}

# Every (API group, resource, verb) the operator and Kopf use: as recorded on the bench with the replicas
# router (tests/security/test_rbac.py), plus what the routers, the primary's HPA and peering use, all on by default.
USED = helpers.OPERATOR_GRANTS | helpers.ROUTER_GRANTS | helpers.AUTOSCALER_GRANTS | helpers.PEERING_GRANTS
PEERING_CRD = yaml.safe_load((CHART / "crds" / "kopfpeerings.yaml").read_text())

# The Prometheus Operator's CRDs (monitoring.coreos.com/v1, operator v0.82), cut down to the fields the
# chart sets and made strict: an API server prunes a field its CRD lacks without a word.
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}


def custom_resource(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "namespace"],
                "properties": {
                    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
                    "namespace": {"type": "string", "minLength": 1},
                    "labels": STRINGS,
                    "annotations": STRINGS,
                },
            },
            "spec": spec,
        },
    }


CUSTOM_RESOURCES = {
    "PrometheusRule": custom_resource(
        "PrometheusRule",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string", "pattern": DURATION},
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["alert", "expr"],
                                    "properties": {
                                        "alert": {"type": "string", "minLength": 1},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {"type": "string", "pattern": DURATION},
                                        "labels": STRINGS,
                                        "annotations": STRINGS,
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    ),
    "ServiceMonitor": custom_resource(
        "ServiceMonitor",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": STRINGS},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string", "minLength": 1},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": DURATION},
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    ),
}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """``helm template``: the rendered objects by kind (the chart makes one of each)."""
    objects: dict[str, dict[str, Any]] = {}
    for path, text in chart.render(values, name=RELEASE, namespace=NAMESPACE).items():
        if path.endswith("NOTES.txt"):
            continue
        for obj in yaml.safe_load_all(text):
            if obj:
                assert obj["kind"] not in objects, f"two {obj['kind']}s rendered"
                objects[obj["kind"]] = obj
    return objects


def pod_spec(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return dict(objects["Deployment"]["spec"]["template"]["spec"])


def assert_accepted_by_kubernetes(obj: dict[str, Any]) -> None:
    """Strict validation, failing with the one offending field rather than the whole schema."""
    try:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        return
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(part) for part in e.path)
        rejection = f"Kubernetes {KUBERNETES} rejects {obj['kind']} at {where}: {e.message}"
    pytest.fail(rejection, pytrace=False)


def assert_accepted(obj: dict[str, Any]) -> None:
    """Kubernetes' own schemas for its kinds, the Prometheus Operator's CRDs (cut down) for its kinds."""
    schema = CUSTOM_RESOURCES.get(obj["kind"])
    if obj["kind"] == "ClusterKopfPeering":
        assert obj["apiVersion"] == "kopf.dev/v1" and set(obj["metadata"]) <= {"name", "labels"}
        schema = PEERING_CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    if schema is None:
        assert_accepted_by_kubernetes(obj)
        return
    error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema).iter_errors(obj))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path)
        pytest.fail(f"the {obj['kind']} CRD rejects it at {where}: {error.message}", pytrace=False)


def container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    [only] = pod_spec(objects)["containers"]
    return dict(only)


def granted(cluster_role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in cluster_role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_chart_lints_clean_in_strict_mode() -> None:
    report = helm.lint(CHART, strict=True, kube_version=f"v{KUBERNETES}.0", namespace=NAMESPACE)
    assert report["errors"] == []
    # Helm's only remark is informational: there is no icon to point at.
    assert [m for m in report["messages"] if m["severity"] > 1] == []


def test_the_chart_the_image_and_the_operator_carry_one_version() -> None:
    version = helpers.project_version()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"]) == ("v2", "canary-operator")
    assert chart["version"] == chart["appVersion"] == version, "docs/release.md: all three move together"


def test_the_changelog_has_a_section_for_the_version() -> None:
    changelog = (helpers.ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(helpers.project_version())}\] - \d{{4}}-\d\d-\d\d$", changelog, re.M)


def test_a_default_install_renders_objects_kubernetes_accepts_strictly(chart: helm.Chart) -> None:
    objects = render(chart)
    assert set(objects) == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ClusterKopfPeering",
    }
    for obj in objects.values():
        assert_accepted(obj)


def test_every_option_set_still_renders_objects_kubernetes_accepts_strictly(chart: helm.Chart) -> None:
    objects = render(
        chart,
        {
            "image": {"repository": "registry.example/canary-operator", "tag": "0.1.0-rc1", "pullPolicy": "Always"},
            "imagePullSecrets": [{"name": "registry"}],
            "tickSeconds": 0.5,
            "logFormat": "console",
            "metrics": {"port": 9102},
            "serviceMonitor": {"enabled": True, "interval": "1m30s", "labels": {"release": "kube-prometheus-stack"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "dashboards": {
                "enabled": True,
                "namespace": "monitoring",
                "labels": {"team": "delivery"},
                "annotations": {"grafana_folder": "Delivery"},
            },
            "serviceAccount": {"create": True, "name": "canary", "annotations": {"team": "delivery"}},
            "podAnnotations": {"team": "delivery"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
                        ]
                    }
                }
            },
        },
    )
    assert set(objects) >= {"Service", "ServiceMonitor", "PrometheusRule", "ConfigMap"}
    for obj in objects.values():
        assert_accepted(obj)
    assert pod_spec(objects)["tolerations"][0]["key"] == "dedicated"


def test_the_shipped_crds_are_valid_for_kubernetes(chart: helm.Chart) -> None:
    crds = [yaml.safe_load(crd["data"]) for crd in chart.crds]
    assert {crd["metadata"]["name"] for crd in crds} == {"canaryrollouts.canary.dev", "clusterkopfpeerings.kopf.dev"}
    for crd in crds:
        assert_accepted_by_kubernetes(crd)


def test_the_chart_ships_the_generated_crd_byte_for_byte() -> None:
    assert (CHART / "crds" / "canaryrollouts.yaml").read_bytes() == (
        helpers.ROOT / "crds" / "canaryrollouts.yaml"
    ).read_bytes(), "stale: run `make crds` to copy crds/canaryrollouts.yaml into the chart"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicas": 2, "peering": {"enabled": False, "lifetime": 15}}, "at '/replicas': maximum: got 2, want 1"),
        ({"peering": {"enabled": True, "lifetime": 1}}, "at '/peering/lifetime': minimum: got 1, want 2"),
        ({"tickSeconds": "fast"}, "at '/tickSeconds': got string, want number"),
        ({"tickSeconds": 0}, "at '/tickSeconds': exclusiveMinimum"),
        ({"logFormat": "xml"}, "at '/logFormat': value must be one of 'json', 'console'"),
        ({"replica": 1}, "additional properties 'replica' not allowed"),
        ({"serviceAccount": {"create": False, "name": ""}}, "at '/serviceAccount/name': minLength"),
        ({"metrics": {"port": 80}}, "at '/metrics/port': minimum: got 80, want 1,024"),
        ({"metrics": {"port": "8080"}}, "at '/metrics/port': got string, want integer"),
        ({"serviceMonitor": {"enabled": "yes"}}, "at '/serviceMonitor/enabled': got string, want boolean"),
        ({"serviceMonitor": {"enabled": True, "interval": "30 seconds"}}, "at '/serviceMonitor/interval'"),
        ({"prometheusRule": {"enabled": True, "label": {}}}, "additional properties 'label' not allowed"),
        (
            {"dashboards": {"enabled": True, "labels": {"grafana_dashboard": 1}}},
            "at '/dashboards/labels/grafana_dashboard'",
        ),
        ({"prometheus": {"address": "http://user:pass@prometheus:9090"}}, "at '/prometheus/address'"),
        ({"prometheus": {"allowedAddresses": ["prometheus:9090"]}}, "at '/prometheus/allowedAddresses/0'"),
        ({"prometheus": {"timeout": "0s"}}, "at '/prometheus/timeout'"),
        ({"prometheus": {"headers": {"X Bad": "1"}}}, "invalid propertyName 'X Bad'"),
        ({"prometheus": {"concurrency": 0}}, "at '/prometheus/concurrency'"),
    ],
    ids=[
        "two-standalone-replicas",
        "peering-lifetime-too-short",
        "tick-not-a-number",
        "tick-zero",
        "unknown-log-format",
        "misspelt-key",
        "unnamed-account",
        "privileged-port",
        "port-not-a-number",
        "monitor-switch-not-a-boolean",
        "interval-not-a-duration",
        "misspelt-rule-key",
        "label-not-a-string",
        "credentials-in-the-address",
        "allowed-address-without-scheme",
        "zero-timeout",
        "header-name-with-a-space",
        "no-concurrency",
    ],
)
def test_helm_refuses_values_the_schema_rejects(chart: helm.Chart, values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm.HelmValuesError, match="values don't meet the specifications") as refused:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert complaint in str(refused.value)


def test_the_cluster_role_grants_every_call_the_operator_makes(chart: helm.Chart) -> None:
    missing = USED - granted(render(chart)["ClusterRole"])
    assert not missing, f"the operator would be forbidden: {sorted(missing)}"


def test_the_cluster_role_grants_nothing_more(chart: helm.Chart) -> None:
    extra = granted(render(chart)["ClusterRole"]) - USED
    assert not extra, f"more than the operator needs: {sorted(extra)}"


def test_the_binding_gives_the_role_to_the_account_the_operator_runs_as(chart: helm.Chart) -> None:
    objects = render(chart)
    binding = objects["ClusterRoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": objects["ClusterRole"]["metadata"]["name"],
    }
    account = objects["ServiceAccount"]["metadata"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}]
    assert account["namespace"] == NAMESPACE
    assert pod_spec(objects)["serviceAccountName"] == account["name"]


def test_an_existing_service_account_is_bound_instead_of_a_new_one(chart: helm.Chart) -> None:
    objects = render(chart, {"serviceAccount": {"create": False, "name": "platform-operators"}})
    assert "ServiceAccount" not in objects
    assert objects["ClusterRoleBinding"]["subjects"][0]["name"] == "platform-operators"
    assert pod_spec(objects)["serviceAccountName"] == "platform-operators"


def test_the_operator_runs_as_non_root_on_a_read_only_root_filesystem(chart: helm.Chart) -> None:
    spec = pod_spec(render(chart))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = spec["containers"]
    assert container["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    # The one writable place is a small scratch volume.
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert spec["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}]


def env_of(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(objects)["env"]}


def test_two_peered_replicas_by_default_upgraded_one_pod_at_a_time(chart: helm.Chart) -> None:
    objects = render(chart)
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    env = env_of(objects)
    assert env["CANARY_PEERING"] == objects["ClusterKopfPeering"]["metadata"]["name"] == "canary-canary-operator"
    assert env["CANARY_PEERING_LIFETIME"] == "15"
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}, "each replica peers under its pod's name"


def test_a_drain_keeps_one_replica_and_replicas_spread_over_nodes(chart: helm.Chart) -> None:
    objects = render(chart)
    selector = objects["Deployment"]["spec"]["selector"]
    assert objects["PodDisruptionBudget"]["spec"] == {"minAvailable": 1, "selector": selector}
    [term] = pod_spec(objects)["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"] == {"topologyKey": "kubernetes.io/hostname", "labelSelector": selector}


def test_standalone_runs_one_operator_at_a_time_even_during_an_upgrade(chart: helm.Chart) -> None:
    objects = render(chart, {"replicas": 1, "peering": {"enabled": False, "lifetime": 15}})
    assert objects["Deployment"]["spec"]["replicas"] == 1
    assert objects["Deployment"]["spec"]["strategy"] == {"type": "Recreate"}
    assert "ClusterKopfPeering" not in objects and "PodDisruptionBudget" not in objects
    assert "CANARY_PEERING" not in env_of(objects)
    assert not {rule for rule in granted(objects["ClusterRole"]) if rule[0] == "kopf.dev"}


def test_the_settings_reach_the_operator_as_its_environment(chart: helm.Chart) -> None:
    settings = {"tickSeconds": 0.5, "idleTickSeconds": 10, "logFormat": "console"}
    [container] = pod_spec(render(chart, settings))["containers"]
    assert container["env"][:4] == [
        {"name": "CANARY_TICK_SECONDS", "value": "0.5"},
        {"name": "CANARY_IDLE_TICK_SECONDS", "value": "10"},
        {"name": "CANARY_LOG_FORMAT", "value": "console"},
        {"name": "CANARY_HTTP_PORT", "value": "8080"},
    ]
    assert container["env"][-3:] == [
        {"name": "CANARY_PEERING", "value": "canary-canary-operator"},
        {"name": "CANARY_PEERING_LIFETIME", "value": "15"},
        {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    assert "command" not in container and "args" not in container, "the image's entry point runs the operator"


def operator_settings(objects: dict[str, dict[str, Any]]) -> config.Settings:
    """What the operator would read at startup from the rendered environment (files mounted as rendered)."""
    env = {item["name"]: item["value"] for item in container(objects)["env"] if "value" in item}
    env.pop("CANARY_PROMETHEUS_CREDENTIALS_DIR", None)  # a mount path of the pod, not of this machine
    return config.from_environ(env)


def test_the_default_values_are_the_operators_defaults(chart: helm.Chart) -> None:
    settings = operator_settings(render(chart))
    # but peering: the chart runs 2 replicas peered on its ClusterKopfPeering, the oldest acting
    assert dataclasses.replace(settings, peering=config.Settings().peering) == config.Settings()
    objects = render(chart)
    assert settings.peering.name == objects["ClusterKopfPeering"]["metadata"]["name"]
    assert settings.peering.lifetime == peering.DEFAULT_LIFETIME


def test_the_webhook_allow_list_becomes_the_operators_setting_and_an_empty_one_is_warned_about(
    chart: helm.Chart,
) -> None:
    urls = ["https://hooks.slack.com/services", "http://smoke.qa:8080/hooks"]
    objects = render(chart, {"webhooks": {"allowedUrls": urls}})
    assert operator_settings(objects).webhook_allowed_urls == tuple(urls)
    notes = chart.render({}, name=RELEASE, namespace=NAMESPACE)
    warned = [text for path, text in notes.items() if path.endswith("NOTES.txt")]
    assert "webhooks.allowedUrls is empty" in warned[0]
    quiet = chart.render({"webhooks": {"allowedUrls": urls}}, name=RELEASE, namespace=NAMESPACE)
    assert not [t for p, t in quiet.items() if p.endswith("NOTES.txt") and "webhooks.allowedUrls is empty" in t]


def test_the_prometheus_values_become_the_operators_settings(chart: helm.Chart) -> None:
    values = {
        "prometheus": {
            "address": "https://mimir.monitoring:8080/prometheus",
            "timeout": "15s",
            "maxTimeout": "1m",
            "allowedAddresses": ["http://thanos.monitoring:10902", "https://mimir.monitoring:8080/prometheus"],
            "credentialsSecret": "prometheus-reader",
            "insecureSkipVerify": True,
            "headers": {"X-Scope-OrgID": "platform"},
            "maxResponseBytes": 2097152,
            "concurrency": 8,
        }
    }
    objects = render(chart, values)
    assert_accepted_by_kubernetes(objects["Deployment"])
    assert operator_settings(objects).prometheus == config.PrometheusSettings(
        address="https://mimir.monitoring:8080/prometheus",
        timeout=15,
        max_timeout=60,
        allowed_addresses=("http://thanos.monitoring:10902", "https://mimir.monitoring:8080/prometheus"),
        insecure_skip_verify=True,
        headers=(("X-Scope-OrgID", "platform"),),
        max_response_bytes=2097152,
        concurrency=8,
    )
    env = {item["name"]: item["value"] for item in container(objects)["env"] if "value" in item}
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "prometheus-credentials")
    assert env["CANARY_PROMETHEUS_CREDENTIALS_DIR"] == mount["mountPath"] and mount["readOnly"] is True
    volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "prometheus-credentials")
    assert volume["secret"]["secretName"] == "prometheus-reader"


def test_without_a_credentials_secret_nothing_is_mounted(chart: helm.Chart) -> None:
    objects = render(chart)
    assert [v["name"] for v in pod_spec(objects)["volumes"]] == ["tmp"]
    assert "CANARY_PROMETHEUS_CREDENTIALS_DIR" not in {item["name"] for item in container(objects)["env"]}


def test_the_image_tag_defaults_to_the_charts_app_version(chart: helm.Chart) -> None:
    [container] = pod_spec(render(chart))["containers"]
    assert container["image"] == f"canary-operator:{chart.metadata['appVersion']}"
    [container] = pod_spec(render(chart, {"image": {"tag": "0.2.0"}}))["containers"]
    assert container["image"] == "canary-operator:0.2.0"


def test_the_defaults_ask_for_modest_resources(chart: helm.Chart) -> None:
    [container] = pod_spec(render(chart))["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }


def test_the_probes_ask_the_operators_own_endpoints_on_its_http_port(chart: helm.Chart) -> None:
    operator = container(render(chart))
    assert operator["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    liveness, readiness = operator["livenessProbe"], operator["readinessProbe"]
    assert liveness["httpGet"] == {"path": "/healthz", "port": "http"}
    assert readiness["httpGet"] == {"path": "/readyz", "port": "http"}
    # /readyz waits up to 5 s for the API server: a shorter timeout would turn its 503 into a timeout.
    assert readiness["timeoutSeconds"] > 5
    # A restart needs half a minute of failed liveness probes, not one slow answer.
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30


def test_one_metrics_port_setting_moves_the_operator_its_probes_and_its_service(chart: helm.Chart) -> None:
    objects = render(chart, {"metrics": {"port": 9102}})
    operator = container(objects)
    assert {"name": "CANARY_HTTP_PORT", "value": "9102"} in operator["env"]
    assert operator["ports"][0]["containerPort"] == 9102
    assert objects["Service"]["spec"]["ports"] == [
        {"name": "http-metrics", "port": 9102, "targetPort": "http", "protocol": "TCP"}
    ]


def test_the_metrics_service_selects_the_operators_pod_even_while_it_is_not_ready(chart: helm.Chart) -> None:
    objects = render(chart)
    service = objects["Service"]["spec"]
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    assert service["publishNotReadyAddresses"] is True


def test_the_monitoring_objects_are_opt_in(chart: helm.Chart) -> None:
    assert not {"ServiceMonitor", "PrometheusRule", "ConfigMap"} & set(render(chart))
    assert {"ServiceMonitor", "PrometheusRule", "ConfigMap"} <= set(render(chart, MONITORING))


def test_the_service_monitor_scrapes_the_metrics_port_as_the_job_the_alerts_expect(chart: helm.Chart) -> None:
    objects = render(chart, {**MONITORING, "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}})
    monitor, service = objects["ServiceMonitor"], objects["Service"]
    assert_accepted(monitor)
    assert monitor["metadata"]["labels"]["release"] == "kps"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    # The job label is the Service's label named by jobLabel: "canary-operator" whatever the release's name.
    assert service["metadata"]["labels"][spec["jobLabel"]] == "canary-operator"
    [endpoint] = spec["endpoints"]
    assert endpoint == {"port": "http-metrics", "path": "/metrics", "interval": "30s", "honorLabels": True}
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}


def test_the_prometheus_rule_carries_the_alerts_file_unchanged(chart: helm.Chart) -> None:
    rule = render(chart, {**MONITORING, "prometheusRule": {"enabled": True, "labels": {"release": "kps"}}})[
        "PrometheusRule"
    ]
    assert_accepted(rule)
    assert rule["metadata"]["labels"]["release"] == "kps"
    alerts = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert rule["spec"] == {"groups": alerts["groups"]}


def test_the_dashboard_reaches_grafanas_sidecar_as_a_labelled_config_map(chart: helm.Chart) -> None:
    config_map = render(chart, {**MONITORING, "dashboards": {"enabled": True, "namespace": "monitoring"}})["ConfigMap"]
    assert_accepted(config_map)
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    [(key, text)] = config_map["data"].items()
    assert key.endswith(".json")
    assert json.loads(text) == json.loads((CHART / "files" / "dashboard.json").read_text())


DISCOVERY = {grant for grant in USED if grant[0] == "apiextensions.k8s.io"}
NAMESPACE_WATCH = {("", "namespaces", "list"), ("", "namespaces", "watch")}


def test_a_namespaced_install_grants_the_operators_rules_only_in_the_watched_namespaces(chart: helm.Chart) -> None:
    rendered = [
        obj
        for path, text in chart.render(
            {"watchNamespaces": ["team-a", "team-b"], "peering": {"enabled": False}, "replicas": 1},
            name=RELEASE,
            namespace=NAMESPACE,
        ).items()
        if not path.endswith("NOTES.txt")
        for obj in yaml.safe_load_all(text)
        if obj
    ]
    for obj in rendered:
        assert_accepted_by_kubernetes(obj)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in rendered:
        by_kind.setdefault(obj["kind"], []).append(obj)
    roles, bindings = by_kind["Role"], by_kind["RoleBinding"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for role in roles:
        assert helpers.granted(role["rules"]) == USED - DISCOVERY - helpers.PEERING_GRANTS
    [cluster_role] = by_kind["ClusterRole"]
    # Cluster-wide, read-only: the CRD and the namespaces' comings and goings (Kopf, tests/security/test_namespaced.py).
    assert helpers.granted(cluster_role["rules"]) == DISCOVERY | NAMESPACE_WATCH
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "canary-canary-operator",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "canary-canary-operator", "namespace": NAMESPACE}
        ]
    [operator] = by_kind["Deployment"][0]["spec"]["template"]["spec"]["containers"]
    assert operator["args"] == ["--namespace=team-a", "--namespace=team-b"]


def test_a_cluster_wide_install_passes_no_namespace_and_creates_no_role(chart: helm.Chart) -> None:
    objects = render(chart)
    assert "args" not in container(objects)
    assert "Role" not in objects and "RoleBinding" not in objects


def test_watched_namespaces_must_be_namespace_names(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmValuesError, match="values don't meet the specifications"):
        chart.render({"watchNamespaces": ["../kube-system"]}, name=RELEASE, namespace=NAMESPACE)


def notes(chart: helm.Chart, values: dict[str, Any] | None = None) -> str:
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def test_the_notes_say_which_namespaces_are_watched_and_name_only_files_the_repository_has(chart: helm.Chart) -> None:
    assert "It watches CanaryRollouts in every namespace." in notes(chart)
    namespaced = {"watchNamespaces": ["team-a", "team-b"], "peering": {"enabled": False}, "replicas": 1}
    text = notes(chart, namespaced)
    assert "It watches CanaryRollouts in team-a, team-b only." in text and "every namespace" not in text
    # The commands a user pastes from the notes: every file they apply exists, the example's namespace first.
    applied = re.findall(r"-f (\S+)", notes(chart))
    assert applied[0] == "examples/namespace.yaml", applied
    assert all((helpers.ROOT / path).exists() for path in applied), applied
