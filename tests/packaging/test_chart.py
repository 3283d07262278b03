"""The Helm chart, rendered and linted by the real Helm library, checked against Kubernetes' own schemas.

``helm_python`` binds Helm v4's Go SDK: ``Chart.render`` is ``helm template`` and ``lint`` is
``helm lint``, both enforcing ``values.schema.json`` exactly as an install would.
``kubernetes_validate`` holds the OpenAPI schemas of each Kubernetes release; in strict mode a
misspelt or misplaced field fails, as ``kubectl apply --validate=strict`` would.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import helpers
import kubernetes_validate
import pytest
import yaml

CHART = helpers.ROOT / "charts" / "canary-operator"
KUBERNETES = "1.30"
RELEASE = "canary"
NAMESPACE = "canary-system"

# Every (API group, resource, verb) the operator and Kopf use; "" is the core group.
USED = {
    *(("canary.dev", "canaryrollouts", v) for v in ("get", "list", "watch", "patch", "update")),
    *(("canary.dev", "canaryrollouts/status", v) for v in ("get", "patch", "update")),
    *(("apps", "deployments", v) for v in ("get", "list", "watch", "create", "patch", "update", "delete")),
    *(("", "services", v) for v in ("get", "list", "watch", "create", "patch", "update", "delete")),
    *((group, "events", v) for group in ("", "events.k8s.io") for v in ("create", "patch", "get", "list")),
    *(("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("get", "list", "watch")),
    *(("", "namespaces", v) for v in ("list", "watch")),
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


def test_the_chart_metadata_matches_the_operators_version() -> None:
    project = tomllib.loads((helpers.ROOT / "pyproject.toml").read_text())["project"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"], chart["version"]) == ("v2", "canary-operator", "0.1.0")
    assert chart["appVersion"] == project["version"]


def test_a_default_install_renders_objects_kubernetes_accepts_strictly(chart: helm.Chart) -> None:
    objects = render(chart)
    assert set(objects) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"}
    for obj in objects.values():
        assert_accepted_by_kubernetes(obj)


def test_every_option_set_still_renders_objects_kubernetes_accepts_strictly(chart: helm.Chart) -> None:
    objects = render(
        chart,
        {
            "image": {"repository": "registry.example/canary-operator", "tag": "0.1.0-rc1", "pullPolicy": "Always"},
            "imagePullSecrets": [{"name": "registry"}],
            "tickSeconds": 0.5,
            "logFormat": "console",
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
    for obj in objects.values():
        assert_accepted_by_kubernetes(obj)
    assert pod_spec(objects)["tolerations"][0]["key"] == "dedicated"


def test_the_shipped_crd_is_valid_for_kubernetes(chart: helm.Chart) -> None:
    [crd] = chart.crds
    assert_accepted_by_kubernetes(yaml.safe_load(crd["data"]))


def test_the_chart_ships_the_generated_crd_byte_for_byte() -> None:
    assert (CHART / "crds" / "canaryrollouts.yaml").read_bytes() == (
        helpers.ROOT / "crds" / "canaryrollouts.yaml"
    ).read_bytes(), "stale: run `make crds` to copy crds/canaryrollouts.yaml into the chart"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicas": 2}, "at '/replicas': maximum: got 2, want 1"),
        ({"tickSeconds": "fast"}, "at '/tickSeconds': got string, want number"),
        ({"tickSeconds": 0}, "at '/tickSeconds': exclusiveMinimum"),
        ({"logFormat": "xml"}, "at '/logFormat': value must be one of 'json', 'console'"),
        ({"replica": 1}, "additional properties 'replica' not allowed"),
        ({"serviceAccount": {"create": False, "name": ""}}, "at '/serviceAccount/name': minLength"),
    ],
    ids=["two-replicas", "tick-not-a-number", "tick-zero", "unknown-log-format", "misspelt-key", "unnamed-account"],
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


def test_one_operator_runs_at_a_time_even_during_an_upgrade(chart: helm.Chart) -> None:
    deployment = render(chart)["Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_the_settings_reach_the_operator_as_its_environment(chart: helm.Chart) -> None:
    [container] = pod_spec(render(chart, {"tickSeconds": 0.5, "logFormat": "console"}))["containers"]
    assert container["env"] == [
        {"name": "CANARY_TICK_SECONDS", "value": "0.5"},
        {"name": "CANARY_LOG_FORMAT", "value": "console"},
    ]
    assert "command" not in container and "args" not in container, "the image's entry point runs the operator"


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
