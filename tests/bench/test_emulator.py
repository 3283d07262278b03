"""The emulator answers as a real kube-apiserver does: one documented API behaviour per test."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import kmock
import pytest
from helpers import deployment

from canary_bench import cluster as clusters
from canary_bench import emulation
from canary_bench.emulation import schemas, tables, times

DEPLOYMENTS = "/apis/apps/v1/namespaces/shop/deployments"
SERVICES = "/api/v1/namespaces/shop/services"
CONFIGMAPS = "/api/v1/namespaces/shop/configmaps"
WIDGETS = "/apis/test.dev/v1/namespaces/shop/widgets"

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.dev"},
    "spec": {
        "group": "test.dev",
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "shortNames": ["wd"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "phase": {"type": "string"},
                                    "conditions": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {"type": {"type": "string"}, "status": {"type": "string"}},
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}}, "data": data}


def widget(name: str = "w", size: int = 3, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "test.dev/v1", "kind": "Widget", "metadata": {"name": name}, "spec": {"size": size, **spec}}


@pytest.fixture
def widgets(cluster: clusters.EmulatedCluster) -> str:
    cluster.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD)
    return WIDGETS


def api_error(call: Callable[[], Any]) -> emulation.ApiError:
    with pytest.raises(emulation.ApiError) as info:
        call()
    return info.value


@contextlib.contextmanager
def watching(cluster: clusters.EmulatedCluster, path: str, **params: str) -> Iterator[Any]:
    """A watch-stream; ``stream.readline()`` gives the next raw line, b'' when the server ends it."""
    url = f"{cluster.url}{path}?{urllib.parse.urlencode({'watch': 'true', **params})}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as stream:
        yield stream


def next_event(stream: Any) -> tuple[str, dict[str, Any]]:
    event = json.loads(stream.readline())
    return event["type"], event["object"]


def names(objects: list[dict[str, Any]]) -> list[str]:
    return [obj["metadata"]["name"] for obj in objects]


# ---------------------------------------------------------------- metadata managed by the server


def test_create_sets_uid_creation_timestamp_resource_version_and_generation(cluster: clusters.EmulatedCluster) -> None:
    created = cluster.create(CONFIGMAPS, configmap("a"))
    meta = created["metadata"]
    assert len(meta["uid"]) == 36
    assert times.parse_time(meta["creationTimestamp"]) is not None
    assert meta["creationTimestamp"].endswith("Z")
    assert isinstance(meta["resourceVersion"], str) and int(meta["resourceVersion"]) > 0
    assert meta["generation"] == 1


def test_every_write_gets_a_new_and_higher_resource_version(cluster: clusters.EmulatedCluster) -> None:
    first = cluster.create(CONFIGMAPS, configmap("a"))
    second = cluster.create(CONFIGMAPS, configmap("b"))
    patched = cluster.patch(f"{CONFIGMAPS}/a", {"data": {"k": "v"}})
    versions = [int(o["metadata"]["resourceVersion"]) for o in (first, second, patched)]
    assert versions == sorted(set(versions))


def test_a_patch_that_changes_nothing_keeps_the_resource_version(cluster: clusters.EmulatedCluster) -> None:
    created = cluster.create(CONFIGMAPS, configmap("a", k="v"))
    patched = cluster.patch(f"{CONFIGMAPS}/a", {"data": {"k": "v"}})
    assert patched["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_server_managed_metadata_cannot_be_overwritten(cluster: clusters.EmulatedCluster) -> None:
    created = cluster.create(CONFIGMAPS, configmap("a"))
    forged = {"metadata": {"uid": "forged", "creationTimestamp": "2000-01-01T00:00:00Z"}}
    patched = cluster.patch(f"{CONFIGMAPS}/a", forged)
    assert patched["metadata"]["uid"] == created["metadata"]["uid"]
    assert patched["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]


# ---------------------------------------------------------------- optimistic concurrency


@pytest.mark.parametrize("kind", ["merge", "strategic"])
def test_a_patch_carrying_a_stale_resource_version_is_a_409_conflict(
    cluster: clusters.EmulatedCluster,
    kind: str,
) -> None:
    created = cluster.create(DEPLOYMENTS, deployment())
    cluster.patch(f"{DEPLOYMENTS}/web", {"spec": {"replicas": 3}})
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "spec": {"replicas": 5}}
    error = api_error(lambda: cluster.patch(f"{DEPLOYMENTS}/web", stale, kind=kind))
    assert (error.code, error.reason) == (409, "Conflict")
    assert "the object has been modified" in error.message
    assert (cluster.deployment("shop", "web") or {})["spec"]["replicas"] == 3


def test_a_patch_carrying_the_current_resource_version_succeeds(cluster: clusters.EmulatedCluster) -> None:
    created = cluster.create(CONFIGMAPS, configmap("a"))
    current = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "data": {"k": "v"}}
    assert cluster.patch(f"{CONFIGMAPS}/a", current)["data"] == {"k": "v"}


def test_a_replace_with_a_stale_resource_version_is_a_409_conflict(cluster: clusters.EmulatedCluster) -> None:
    created = cluster.create(CONFIGMAPS, configmap("a", k="1"))
    cluster.patch(f"{CONFIGMAPS}/a", {"data": {"k": "2"}})
    error = api_error(lambda: cluster.replace(f"{CONFIGMAPS}/a", {**created, "data": {"k": "3"}}))
    assert (error.code, error.reason) == (409, "Conflict")


# ---------------------------------------------------------------- generation


def test_generation_grows_with_the_spec_only(cluster: clusters.EmulatedCluster, widgets: str) -> None:
    assert cluster.create(widgets, widget())["metadata"]["generation"] == 1
    assert cluster.patch(f"{widgets}/w", {"spec": {"size": 4}})["metadata"]["generation"] == 2
    assert cluster.patch(f"{widgets}/w", {"metadata": {"labels": {"a": "b"}}})["metadata"]["generation"] == 2
    assert cluster.patch(f"{widgets}/w/status", {"status": {"phase": "Ready"}})["metadata"]["generation"] == 2
    assert cluster.patch(f"{widgets}/w", {"spec": {"size": 5}})["metadata"]["generation"] == 3


# ---------------------------------------------------------------- the status subresource


def test_a_write_to_the_status_subresource_changes_only_the_status(
    cluster: clusters.EmulatedCluster,
    widgets: str,
) -> None:
    cluster.create(widgets, widget(size=3))
    patched = cluster.patch(
        f"{widgets}/w/status", {"spec": {"size": 9}, "metadata": {"labels": {"x": "y"}}, "status": {"phase": "Ready"}}
    )
    assert patched["status"] == {"phase": "Ready"}
    assert patched["spec"]["size"] == 3
    assert "x" not in (patched["metadata"].get("labels") or {})


def test_a_write_to_the_main_resource_ignores_the_status(cluster: clusters.EmulatedCluster, widgets: str) -> None:
    cluster.create(widgets, widget())
    cluster.patch(f"{widgets}/w/status", {"status": {"phase": "Ready"}})
    patched = cluster.patch(f"{widgets}/w", {"spec": {"size": 4}, "status": {"phase": "Broken"}})
    assert patched["status"] == {"phase": "Ready"}
    assert patched["spec"]["size"] == 4


def test_a_create_ignores_the_status_of_a_resource_with_a_status_subresource(
    cluster: clusters.EmulatedCluster,
    widgets: str,
) -> None:
    created = cluster.create(widgets, {**widget(), "status": {"phase": "Ready"}})
    assert "status" not in created


def test_deployments_and_services_have_status_subresources(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(SERVICES, {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})
    patched = cluster.patch(f"{SERVICES}/web", {"status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}})
    assert patched["status"] == {"loadBalancer": {}}
    patched = cluster.patch(f"{SERVICES}/web/status", {"status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}})
    assert patched["status"]["loadBalancer"]["ingress"] == [{"ip": "1.2.3.4"}]


# ---------------------------------------------------------------- creation


def test_create_answers_201_created(cluster: clusters.EmulatedCluster) -> None:
    code, body = cluster.request("POST", CONFIGMAPS, configmap("a"))
    assert code == 201
    assert body["metadata"]["name"] == "a"


def test_the_namespace_is_taken_from_the_url(cluster: clusters.EmulatedCluster) -> None:
    created = cluster.create(CONFIGMAPS, configmap("a"))
    assert created["metadata"]["namespace"] == "shop"


def test_a_namespace_in_the_body_other_than_in_the_url_is_a_400(cluster: clusters.EmulatedCluster) -> None:
    body = configmap("a")
    body["metadata"]["namespace"] = "default"
    error = api_error(lambda: cluster.create(CONFIGMAPS, body))
    assert (error.code, error.reason) == (400, "BadRequest")


def test_a_create_without_a_name_is_a_422_invalid(cluster: clusters.EmulatedCluster) -> None:
    error = api_error(lambda: cluster.create(CONFIGMAPS, {"data": {}}))
    assert (error.code, error.reason) == (422, "Invalid")
    assert error.details["causes"][0]["field"] == "metadata.name"


def test_generate_name_gets_a_random_suffix(cluster: clusters.EmulatedCluster) -> None:
    first = cluster.create(CONFIGMAPS, {"metadata": {"generateName": "event-"}})
    second = cluster.create(CONFIGMAPS, {"metadata": {"generateName": "event-"}})
    assert first["metadata"]["name"].startswith("event-") and len(first["metadata"]["name"]) == len("event-") + 5
    assert first["metadata"]["name"] != second["metadata"]["name"]


def test_an_invalid_name_is_a_422_invalid(cluster: clusters.EmulatedCluster) -> None:
    error = api_error(lambda: cluster.create(CONFIGMAPS, configmap("Not_Valid")))
    assert (error.code, error.reason) == (422, "Invalid")
    assert "RFC 1123" in error.message


def test_creating_an_existing_object_is_a_409_already_exists(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("a"))
    error = api_error(lambda: cluster.create(CONFIGMAPS, configmap("a")))
    assert (error.code, error.reason) == (409, "AlreadyExists")
    assert error.message == 'configmaps "a" already exists'


def test_creating_in_a_missing_namespace_is_a_404(cluster: clusters.EmulatedCluster) -> None:
    error = api_error(lambda: cluster.create("/api/v1/namespaces/nowhere/configmaps", configmap("a")))
    assert (error.code, error.reason, error.message) == (404, "NotFound", 'namespaces "nowhere" not found')


def test_a_dry_run_validates_but_stores_nothing(cluster: clusters.EmulatedCluster) -> None:
    code, body = cluster.request("POST", CONFIGMAPS, configmap("a"), params={"dryRun": "All"})
    assert code == 201 and body["metadata"]["name"] == "a"
    assert cluster.get(f"{CONFIGMAPS}/a") is None


# ---------------------------------------------------------------- errors


def test_a_missing_object_is_a_404_not_found_status(cluster: clusters.EmulatedCluster) -> None:
    code, body = cluster.request("GET", f"{DEPLOYMENTS}/ghost")
    assert code == 404
    assert body == {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "code": 404,
        "reason": "NotFound",
        "message": 'deployments.apps "ghost" not found',
        "details": {"name": "ghost", "group": "apps", "kind": "deployments"},
    }


def test_an_unknown_resource_is_a_404_status(cluster: clusters.EmulatedCluster) -> None:
    code, body = cluster.request("GET", "/apis/apps/v1/namespaces/shop/gizmos")
    assert (code, body["kind"], body["reason"]) == (404, "Status", "NotFound")


# ---------------------------------------------------------------- patches


def test_a_merge_patch_deletes_keys_with_null_and_replaces_lists(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    patch = {
        "metadata": {"labels": {"team": "shop"}},
        "spec": {
            "template": {"spec": {"containers": [{"name": "app", "image": "example/web:2.0"}]}},
            "revisionHistoryLimit": None,
        },
    }
    patched = cluster.patch(f"{DEPLOYMENTS}/web", patch, kind="merge")
    assert [c["name"] for c in patched["spec"]["template"]["spec"]["containers"]] == ["app"]
    assert patched["metadata"]["labels"] == {"team": "shop"}
    assert patched["spec"]["revisionHistoryLimit"] == 10  # deleted, then defaulted again by the API


def test_a_json_patch_applies_its_operations_in_order(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("a", one="1", two="2"))
    patched = cluster.patch(
        f"{CONFIGMAPS}/a",
        [
            {"op": "test", "path": "/data/one", "value": "1"},
            {"op": "add", "path": "/data/three", "value": "3"},
            {"op": "replace", "path": "/data/one", "value": "uno"},
            {"op": "remove", "path": "/data/two"},
            {"op": "copy", "from": "/data/three", "path": "/data/four"},
            {"op": "move", "from": "/data/four", "path": "/data/five"},
            {"op": "add", "path": "/metadata/finalizers", "value": []},
            {"op": "add", "path": "/metadata/finalizers/-", "value": "x.dev/f"},
        ],
        kind="json",
    )
    assert patched["data"] == {"one": "uno", "three": "3", "five": "3"}
    assert patched["metadata"]["finalizers"] == ["x.dev/f"]


def test_a_failed_json_patch_test_is_a_422_invalid_and_changes_nothing(cluster: clusters.EmulatedCluster) -> None:
    created = cluster.create(CONFIGMAPS, configmap("a", k="v"))
    cluster.patch(f"{CONFIGMAPS}/a", {"data": {"k": "newer"}})
    # What Kopf sends to remove its finalizer: the test guards against a concurrent change.
    error = api_error(
        lambda: cluster.patch(
            f"{CONFIGMAPS}/a",
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": created["metadata"]["resourceVersion"]},
                {"op": "replace", "path": "/data/k", "value": "lost"},
            ],
            kind="json",
        )
    )
    assert (error.code, error.reason) == (422, "Invalid")
    assert (cluster.get(f"{CONFIGMAPS}/a") or {})["data"] == {"k": "newer"}


def test_a_json_patch_of_a_missing_path_is_a_422(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("a"))
    error = api_error(lambda: cluster.patch(f"{CONFIGMAPS}/a", [{"op": "remove", "path": "/data/nope"}], kind="json"))
    assert error.code == 422


def test_a_strategic_merge_patch_merges_containers_by_name(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "example/web:2.0"}]}}}}
    containers = cluster.patch(f"{DEPLOYMENTS}/web", patch, kind="strategic")["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("app", "example/web:2.0"),
        ("sidecar", "example/sidecar:1.0"),
    ]
    assert containers[0]["env"] == [{"name": "MODE", "value": "stable"}]


def test_a_strategic_merge_patch_merges_env_ports_and_volumes_by_their_keys(
    cluster: clusters.EmulatedCluster,
) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "volumes": [{"name": "cache", "emptyDir": {}}],
                    "containers": [
                        {
                            "name": "app",
                            "env": [{"name": "MODE", "value": "canary"}, {"name": "EXTRA", "value": "1"}],
                            "ports": [{"containerPort": 9090, "name": "metrics"}],
                            "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
                        }
                    ],
                }
            }
        }
    }
    spec = cluster.patch(f"{DEPLOYMENTS}/web", patch, kind="strategic")["spec"]["template"]["spec"]
    app = spec["containers"][0]
    assert app["env"] == [{"name": "MODE", "value": "canary"}, {"name": "EXTRA", "value": "1"}]
    assert [p["containerPort"] for p in app["ports"]] == [8080, 9090]
    assert app["volumeMounts"] == [{"name": "cache", "mountPath": "/cache"}]
    assert spec["volumes"] == [{"name": "cache", "emptyDir": {}}]


def test_a_strategic_merge_patch_honours_delete_and_replace_directives(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    deleted = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}
    spec = cluster.patch(f"{DEPLOYMENTS}/web", deleted, kind="strategic")["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["app"]
    replaced = {
        "spec": {
            "template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "example/only:1.0"}]}}
        }
    }
    spec = cluster.patch(f"{DEPLOYMENTS}/web", replaced, kind="strategic")["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["only"]


def test_a_strategic_merge_patch_of_a_custom_resource_is_415_unsupported(
    cluster: clusters.EmulatedCluster,
    widgets: str,
) -> None:
    cluster.create(widgets, widget())
    error = api_error(lambda: cluster.patch(f"{widgets}/w", {"spec": {"size": 4}}, kind="strategic"))
    assert (error.code, error.reason) == (415, "UnsupportedMediaType")


def test_a_patch_of_an_unknown_content_type_is_415(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("a"))
    code, body = cluster.request("PATCH", f"{CONFIGMAPS}/a", {"data": {}}, content_type="application/json")
    assert (code, body["reason"]) == (415, "UnsupportedMediaType")


# ---------------------------------------------------------------- replace


def test_a_put_replaces_the_whole_object(cluster: clusters.EmulatedCluster) -> None:
    created = cluster.create(CONFIGMAPS, configmap("a", old="1"))
    code, body = cluster.request("PUT", f"{CONFIGMAPS}/a", {**created, "data": {"new": "2"}})
    assert code == 200
    assert body["data"] == {"new": "2"}
    assert int(body["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_a_put_without_a_resource_version_is_unconditional(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("a"))
    assert cluster.replace(f"{CONFIGMAPS}/a", configmap("a", k="v"))["data"] == {"k": "v"}


def test_a_put_of_a_missing_object_is_a_404(cluster: clusters.EmulatedCluster) -> None:
    assert api_error(lambda: cluster.replace(f"{CONFIGMAPS}/a", configmap("a"))).code == 404


# ---------------------------------------------------------------- deletion and finalizers


def test_a_delete_without_finalizers_removes_the_object(cluster: clusters.EmulatedCluster) -> None:
    created = cluster.create(CONFIGMAPS, configmap("a"))
    answer = cluster.delete(f"{CONFIGMAPS}/a")
    assert answer is not None and answer["kind"] == "Status" and answer["status"] == "Success"
    assert answer["details"]["uid"] == created["metadata"]["uid"]
    assert cluster.get(f"{CONFIGMAPS}/a") is None
    assert api_error(lambda: cluster._call("DELETE", f"{CONFIGMAPS}/a")).code == 404


def test_a_delete_with_finalizers_only_marks_the_object_for_deletion(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, {**configmap("a"), "metadata": {"name": "a", "finalizers": ["x.dev/f"]}})
    answer = cluster.delete(f"{CONFIGMAPS}/a")
    assert answer is not None and answer["metadata"]["deletionTimestamp"]
    stored = cluster.get(f"{CONFIGMAPS}/a")
    assert stored is not None and stored["metadata"]["deletionTimestamp"] == answer["metadata"]["deletionTimestamp"]


def test_removing_the_last_finalizer_of_an_object_being_deleted_removes_it(
    cluster: clusters.EmulatedCluster,
) -> None:
    cluster.create(CONFIGMAPS, {**configmap("a"), "metadata": {"name": "a", "finalizers": ["x.dev/f", "y.dev/f"]}})
    cluster.delete(f"{CONFIGMAPS}/a")
    cluster.patch(f"{CONFIGMAPS}/a", {"metadata": {"finalizers": ["y.dev/f"]}})
    assert cluster.get(f"{CONFIGMAPS}/a") is not None
    cluster.patch(f"{CONFIGMAPS}/a", [{"op": "remove", "path": "/metadata/finalizers/0"}], kind="json")
    assert cluster.get(f"{CONFIGMAPS}/a") is None


def test_no_finalizer_can_be_added_to_an_object_being_deleted(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, {**configmap("a"), "metadata": {"name": "a", "finalizers": ["x.dev/f"]}})
    cluster.delete(f"{CONFIGMAPS}/a")
    error = api_error(lambda: cluster.patch(f"{CONFIGMAPS}/a", {"metadata": {"finalizers": ["x.dev/f", "new"]}}))
    assert (error.code, error.reason) == (422, "Invalid")


def test_deleting_an_owner_deletes_its_dependents(cluster: clusters.EmulatedCluster) -> None:
    owner = cluster.create(CONFIGMAPS, configmap("owner"))
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    cluster.create(CONFIGMAPS, {"metadata": {"name": "dependent", "ownerReferences": [reference]}})
    cluster.create(CONFIGMAPS, {"metadata": {"name": "orphan"}})
    cluster.delete(f"{CONFIGMAPS}/owner")
    cluster.wait_for(lambda: cluster.get(f"{CONFIGMAPS}/dependent") is None, message="garbage collection")
    assert cluster.get(f"{CONFIGMAPS}/orphan") is not None


def test_deleting_a_namespace_terminates_it_and_deletes_its_content(cluster: clusters.EmulatedCluster) -> None:
    cluster.create_namespace("temp")
    held = "/api/v1/namespaces/temp/configmaps/held"
    cluster.create("/api/v1/namespaces/temp/configmaps", {"metadata": {"name": "held", "finalizers": ["x.dev/f"]}})
    cluster.delete("/api/v1/namespaces/temp")
    assert (cluster.get("/api/v1/namespaces/temp") or {})["status"]["phase"] == "Terminating"
    cluster.wait_for(
        lambda: (cluster.get(held) or {}).get("metadata", {}).get("deletionTimestamp"),
        message="the content to be deleted",
    )
    error = api_error(lambda: cluster.create("/api/v1/namespaces/temp/configmaps", configmap("new")))
    assert (error.code, error.reason) == (403, "Forbidden")
    cluster.patch(held, {"metadata": {"finalizers": None}})
    cluster.wait_for(lambda: cluster.get("/api/v1/namespaces/temp") is None, message="the namespace to go")
    assert cluster.get(held) is None


# ---------------------------------------------------------------- lists and selectors


@pytest.fixture
def labelled(cluster: clusters.EmulatedCluster) -> clusters.EmulatedCluster:
    cluster.create(CONFIGMAPS, configmap("a", {"app": "web", "tier": "front"}))
    cluster.create(CONFIGMAPS, configmap("b", {"app": "web", "tier": "back"}))
    cluster.create(CONFIGMAPS, configmap("c", {"app": "api"}))
    cluster.create(CONFIGMAPS, configmap("d"))
    return cluster


@pytest.mark.parametrize(
    "selector, expected",
    [
        ("app=web", ["a", "b"]),
        ("app==web", ["a", "b"]),
        ("app!=web", ["c", "d"]),
        ("tier in (front,back)", ["a", "b"]),
        ("tier notin (front)", ["b", "c", "d"]),
        ("tier", ["a", "b"]),
        ("!tier", ["c", "d"]),
        ("app=web,tier=back", ["b"]),
        ("app in (web, api),!tier", ["c"]),
    ],
)
def test_lists_filter_by_label_selectors(
    labelled: clusters.EmulatedCluster,
    selector: str,
    expected: list[str],
) -> None:
    assert names(labelled.list(CONFIGMAPS, label_selector=selector)) == expected


def test_an_unparsable_label_selector_is_a_400(labelled: clusters.EmulatedCluster) -> None:
    error = api_error(lambda: labelled.list(CONFIGMAPS, label_selector="app in web"))
    assert (error.code, error.reason) == (400, "BadRequest")


@pytest.mark.parametrize(
    "selector, expected",
    [
        ("metadata.name=b", ["b"]),
        ("metadata.name!=b", ["a", "c", "d"]),
        ("metadata.namespace=shop,metadata.name==c", ["c"]),
        ("metadata.namespace=default", []),
    ],
)
def test_lists_filter_by_field_selectors(
    labelled: clusters.EmulatedCluster,
    selector: str,
    expected: list[str],
) -> None:
    assert names(labelled.list("/api/v1/configmaps", field_selector=selector)) == expected


def test_an_unsupported_field_selector_is_a_400(labelled: clusters.EmulatedCluster) -> None:
    error = api_error(lambda: labelled.list(CONFIGMAPS, field_selector="data.k=v"))
    assert (error.code, error.message) == (400, "field label not supported: data.k")


def test_a_list_has_the_list_kind_api_version_and_resource_version(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    code, body = cluster.request("GET", DEPLOYMENTS)
    assert code == 200
    assert (body["kind"], body["apiVersion"]) == ("DeploymentList", "apps/v1")
    assert int(body["metadata"]["resourceVersion"]) >= int(body["items"][0]["metadata"]["resourceVersion"])
    assert "kind" not in body["items"][0]  # typed lists of built-in kinds omit it


def test_a_list_is_paginated_with_limit_and_continue(labelled: clusters.EmulatedCluster) -> None:
    _, first = labelled.request("GET", CONFIGMAPS, params={"limit": "3"})
    assert names(first["items"]) == ["a", "b", "c"]
    assert first["metadata"]["remainingItemCount"] == 1
    _, rest = labelled.request("GET", CONFIGMAPS, params={"limit": "3", "continue": first["metadata"]["continue"]})
    assert names(rest["items"]) == ["d"]
    assert "continue" not in rest["metadata"]


def test_namespaces_are_listed_cluster_wide(cluster: clusters.EmulatedCluster) -> None:
    code, body = cluster.request("GET", "/api/v1/namespaces")
    assert (code, body["kind"]) == (200, "NamespaceList")
    assert {"default", "shop"} <= set(names(body["items"]))
    assert all(ns["status"]["phase"] == "Active" for ns in body["items"])


def test_all_namespaces_are_listed_at_the_cluster_wide_path(cluster: clusters.EmulatedCluster) -> None:
    cluster.create_namespace("other")
    cluster.create(CONFIGMAPS, configmap("a"))
    cluster.create("/api/v1/namespaces/other/configmaps", configmap("b"))
    listed = cluster.list("/api/v1/configmaps")
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in listed] == [("other", "b"), ("shop", "a")]


# ---------------------------------------------------------------- watches


def test_a_watch_streams_json_lines_of_the_changes(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("a"))
    with watching(cluster, CONFIGMAPS) as stream:
        assert stream.headers["Content-Type"] == "application/json"
        assert next_event(stream)[0] == "ADDED"  # the existing objects first
        cluster.patch(f"{CONFIGMAPS}/a", {"data": {"k": "v"}})
        kind, obj = next_event(stream)
        assert (kind, obj["kind"], obj["data"]) == ("MODIFIED", "ConfigMap", {"k": "v"})
        cluster.delete(f"{CONFIGMAPS}/a")
        assert next_event(stream)[0] == "DELETED"


def test_a_watch_resumes_after_the_resource_version_of_a_list(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("before"))
    _, listed = cluster.request("GET", CONFIGMAPS)
    cluster.create(CONFIGMAPS, configmap("after"))
    with watching(cluster, CONFIGMAPS, resourceVersion=listed["metadata"]["resourceVersion"]) as stream:
        kind, obj = next_event(stream)
    assert (kind, obj["metadata"]["name"]) == ("ADDED", "after")


def test_a_watch_from_a_forgotten_resource_version_is_410_gone(cluster: clusters.EmulatedCluster) -> None:
    cluster.call(lambda: setattr(cluster.emulator, "change_log_limit", 2))
    first = cluster.create(CONFIGMAPS, configmap("a"))
    for value in "123":
        cluster.patch(f"{CONFIGMAPS}/a", {"data": {"k": value}})
    with watching(cluster, CONFIGMAPS, resourceVersion=first["metadata"]["resourceVersion"]) as stream:
        kind, status = next_event(stream)
    assert (kind, status["code"], status["reason"]) == ("ERROR", 410, "Expired")


def test_a_watch_ends_after_its_timeout_seconds(cluster: clusters.EmulatedCluster) -> None:
    started = time.monotonic()
    with watching(cluster, CONFIGMAPS, timeoutSeconds="0.2") as stream:
        assert stream.readline() == b""
    assert time.monotonic() - started < 3


def test_a_watch_with_a_label_selector_sees_objects_leave_and_enter_it(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("a", {"app": "web"}))
    with watching(cluster, CONFIGMAPS, labelSelector="app=web") as stream:
        assert next_event(stream)[0] == "ADDED"
        cluster.patch(f"{CONFIGMAPS}/a", {"metadata": {"labels": {"app": "api"}}})
        assert next_event(stream)[0] == "DELETED"
        cluster.patch(f"{CONFIGMAPS}/a", {"metadata": {"labels": {"app": "web"}}})
        assert next_event(stream)[0] == "ADDED"


def test_a_watch_of_one_object_by_field_selector(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("a"))
    cluster.create(CONFIGMAPS, configmap("b"))
    with watching(cluster, CONFIGMAPS, fieldSelector="metadata.name=b") as stream:
        assert next_event(stream)[1]["metadata"]["name"] == "b"
        cluster.patch(f"{CONFIGMAPS}/a", {"data": {"k": "v"}})
        cluster.patch(f"{CONFIGMAPS}/b", {"data": {"k": "v"}})
        assert next_event(stream)[1]["metadata"]["name"] == "b"


def test_a_watch_with_initial_events_ends_them_with_a_bookmark(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("a"))
    with watching(
        cluster, CONFIGMAPS, sendInitialEvents="true", resourceVersionMatch="NotOlderThan", allowWatchBookmarks="true"
    ) as stream:
        assert next_event(stream)[0] == "ADDED"
        kind, bookmark = next_event(stream)
    assert kind == "BOOKMARK"
    assert bookmark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


# ---------------------------------------------------------------- the scale subresource


def test_the_scale_subresource_reads_and_writes_the_deployment_replicas(cluster: clusters.EmulatedCluster) -> None:
    cluster.hold_rollout("shop", "web")  # the Deployment controller then writes its status once per generation
    cluster.create(DEPLOYMENTS, deployment(replicas=2))
    scale = cluster.get(f"{DEPLOYMENTS}/web/scale")
    assert scale is not None
    assert (scale["apiVersion"], scale["kind"], scale["spec"]) == ("autoscaling/v1", "Scale", {"replicas": 2})
    assert scale["status"]["selector"] == "app=web"
    assert cluster.patch(f"{DEPLOYMENTS}/web/scale", {"spec": {"replicas": 5}})["spec"]["replicas"] == 5
    scaled = cluster.wait_for(
        lambda: (d := cluster.deployment("shop", "web")) and d.get("status", {}).get("observedGeneration") == 2 and d,
        message="the controller",
    )
    assert scaled["spec"]["replicas"] == 5
    fresh = cluster.get(f"{DEPLOYMENTS}/web/scale")
    assert fresh is not None
    assert cluster.replace(f"{DEPLOYMENTS}/web/scale", {**fresh, "spec": {"replicas": 1}})["spec"]["replicas"] == 1
    assert api_error(lambda: cluster.replace(f"{DEPLOYMENTS}/web/scale", fresh)).code == 409  # now stale


# ---------------------------------------------------------------- tables for kubectl


def test_a_table_shows_name_and_the_printer_columns(cluster: clusters.EmulatedCluster, widgets: str) -> None:
    cluster.create(widgets, widget(size=3))
    cluster.patch(f"{widgets}/w/status", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    code, table = cluster.request("GET", widgets, accept=accept)
    assert (code, table["kind"], table["apiVersion"]) == (200, "Table", "meta.k8s.io/v1")
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size", "Ready", "Age"]
    name, size, ready, age = table["rows"][0]["cells"]
    assert (name, size, ready) == ("w", 3, "True")
    assert age.endswith("s")
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_a_table_of_deployments_shows_the_ready_replicas(cluster: clusters.EmulatedCluster) -> None:
    cluster.hold_rollout("shop", "web")
    cluster.create(DEPLOYMENTS, deployment(replicas=2))
    _, table = cluster.request("GET", DEPLOYMENTS, accept="application/json;as=Table;v=v1;g=meta.k8s.io")
    columns = [c["name"] for c in table["columnDefinitions"]]
    cells = dict(zip(columns, table["rows"][0]["cells"], strict=True))
    assert columns[:5] == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    assert cells["Ready"] == "0/2"


@pytest.mark.parametrize(
    "expression, expected",
    [
        (".status.phase", ["Ready"]),
        ("{.status.phase}", ["Ready"]),
        ('.status.conditions[?(@.type=="Ready")].status', ["True"]),
        (".status.conditions[?(@.type=='Synced')].reason", ["Later"]),
        (".status.conditions[0].type", ["Ready"]),
        (".status.conditions[*].type", ["Ready", "Synced"]),
        (".metadata.labels.app\\.kubernetes\\.io/name", ["web"]),
        (".status.missing", []),
    ],
)
def test_printer_column_json_paths(expression: str, expected: list[Any]) -> None:
    obj = {
        "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
        "status": {
            "phase": "Ready",
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Synced", "status": "False", "reason": "Later"},
            ],
        },
    }
    assert tables.jsonpath(obj, expression) == expected


@pytest.mark.parametrize(
    "seconds, age",
    [
        (5, "5s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (10 * 3600, "10h"),
        (3 * 86400, "3d"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400, "3y"),
    ],
)
def test_ages_are_printed_as_kubectl_does(seconds: int, age: str) -> None:
    assert times.human_duration(seconds) == age


# ---------------------------------------------------------------- discovery and custom resources


def test_discovery_lists_the_subresources_and_the_scale_kind(cluster: clusters.EmulatedCluster) -> None:
    _, body = cluster.request("GET", "/apis/apps/v1")
    resources = {r["name"]: r for r in body["resources"]}
    assert resources["deployments"]["namespaced"] is True
    assert resources["deployments/status"]["kind"] == "Deployment"
    scale = resources["deployments/scale"]
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")


def test_posting_a_crd_serves_its_custom_resource(cluster: clusters.EmulatedCluster, widgets: str) -> None:
    _, body = cluster.request("GET", "/apis/test.dev/v1")
    resources = {r["name"]: r for r in body["resources"]}
    assert resources["widgets"]["shortNames"] == ["wd"]
    assert "widgets/status" in resources
    crd = cluster.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.dev")
    assert crd is not None
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"


def test_a_custom_resource_is_pruned_and_defaulted_by_its_schema(
    cluster: clusters.EmulatedCluster,
    widgets: str,
) -> None:
    created = cluster.create(widgets, widget(unknown="dropped"))
    assert created["spec"] == {"size": 3, "color": "red"}
    status = cluster.patch(f"{widgets}/w/status", {"status": {"phase": "Ready", "bogus": 1}})["status"]
    assert status == {"phase": "Ready"}


def test_a_custom_resource_violating_its_schema_is_a_422_invalid(
    cluster: clusters.EmulatedCluster,
    widgets: str,
) -> None:
    error = api_error(lambda: cluster.create(widgets, widget(size=11, color="green")))
    assert (error.code, error.reason) == (422, "Invalid")
    fields = {cause["field"] for cause in error.details["causes"]}
    assert fields == {"spec.size", "spec.color"}
    error = api_error(lambda: cluster.create(widgets, {"metadata": {"name": "x"}, "spec": {}}))
    assert error.details["causes"][0] == {
        "reason": "FieldValueRequired",
        "message": "Required value",
        "field": "spec.size",
    }


def test_strict_field_validation_rejects_unknown_fields(cluster: clusters.EmulatedCluster, widgets: str) -> None:
    code, body = cluster.request("POST", widgets, widget(unknown="x"), params={"fieldValidation": "Strict"})
    assert (code, body["reason"]) == (400, "BadRequest")
    assert 'unknown field "spec.unknown"' in body["message"]


# ---------------------------------------------------------------- built-in defaults and rules


def test_deployments_get_the_api_defaults(cluster: clusters.EmulatedCluster) -> None:
    body = deployment()
    del body["spec"]["replicas"]
    spec = cluster.create(DEPLOYMENTS, body)["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    app = spec["template"]["spec"]["containers"][0]
    assert (app["imagePullPolicy"], app["ports"][0]["protocol"]) == ("IfNotPresent", "TCP")


def test_a_deployment_whose_selector_does_not_match_its_template_is_invalid(
    cluster: clusters.EmulatedCluster,
) -> None:
    body = deployment()
    body["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    error = api_error(lambda: cluster.create(DEPLOYMENTS, body))
    assert (error.code, error.details["causes"][0]["field"]) == (422, "spec.template.metadata.labels")


def test_the_selector_of_a_deployment_is_immutable(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    patch = {
        "spec": {
            "selector": {"matchLabels": {"app": "web", "track": "canary"}},
            "template": {"metadata": {"labels": {"app": "web", "track": "canary"}}},
        }
    }
    error = api_error(lambda: cluster.patch(f"{DEPLOYMENTS}/web", patch))
    assert error.code == 422
    assert error.details["causes"][0]["field"] == "spec.selector"
    assert error.details["causes"][0]["message"].endswith("field is immutable")


def test_services_get_a_cluster_ip_and_port_defaults(cluster: clusters.EmulatedCluster) -> None:
    created = cluster.create(
        SERVICES, {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    )
    spec = created["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["clusterIP"].startswith("10.96.")
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    patched = cluster.patch(f"{SERVICES}/web", {"spec": {"selector": {"app": "web", "track": "primary"}}})
    assert patched["spec"]["clusterIP"] == spec["clusterIP"]


# ---------------------------------------------------------------- still kmock


def test_kmock_reactions_still_override_the_emulation(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(DEPLOYMENTS, deployment(replicas=2))
    cluster.call(lambda: cluster.emulator["patch", kmock.resource("apps", "v1", "deployments")] << 503)
    code, _ = cluster.request(
        "PATCH", f"{DEPLOYMENTS}/web", {"spec": {"replicas": 3}}, content_type="application/merge-patch+json"
    )
    assert code == 503
    assert (cluster.deployment("shop", "web") or {})["spec"]["replicas"] == 2


def test_the_history_of_every_object_is_kept_for_assertions(cluster: clusters.EmulatedCluster) -> None:
    cluster.create(CONFIGMAPS, configmap("a", k="1"))
    cluster.patch(f"{CONFIGMAPS}/a", {"data": {"k": "2"}})
    cluster.delete(f"{CONFIGMAPS}/a")
    history = cluster.call(
        lambda: [
            None if version is None else version["data"]["k"]
            for version in cluster.emulator.objects["v1/configmaps", "shop", "a"].history
        ]
    )
    assert history == ["1", "2", "2", None]


def test_a_free_form_object_survives_pruning_only_with_preserve_unknown_fields() -> None:
    """As kube-apiserver's pruning does it: ``additionalProperties: true`` keeps the keys, not what is inside them."""
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "w:1"}]}}
    schema = {
        "type": "object",
        "properties": {
            "open": {"type": "object", "additionalProperties": True},
            "kept": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    unknown: list[str] = []
    pruned = schemas.prune({"open": template, "kept": template, "flat": {"a": 1}}, schema, unknown=unknown)
    assert pruned["open"] == {"metadata": {}, "spec": {}}, "nested objects are emptied"
    assert schemas.prune({"open": {"n": 1, "xs": [{"a": 1}, 2]}}, schema)["open"] == {"n": 1, "xs": [{}, 2]}
    assert pruned["kept"] == template
    assert "flat" not in pruned and unknown == ["flat"]
