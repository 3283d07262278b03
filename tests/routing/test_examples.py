"""The examples in examples/: every CanaryRollout passes the generated CRD schema and the models, every
Kubernetes object passes Kubernetes' own schema (strict), the user's route objects pass the routers' CRD
schemas, and each router accepts its example's route as it is."""

from __future__ import annotations

import pathlib
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helpers import ROOT, deployment

from canary_bench import cluster as clusters
from canary_bench.emulation import networking
from canary_operator import crds, kube, models, routing, workloads

EXAMPLES = [ROOT / "examples" / f"web-{router}.yaml" for router in ("gatewayapi", "istio", "nginx")]
ALL_EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
KUBERNETES = "1.30"
SCHEMAS = {
    crd["spec"]["names"]["kind"]: crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for crd in networking.ROUTER_CRDS
}
COLLECTIONS = {
    "HTTPRoute": "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes",
    "VirtualService": "/apis/networking.istio.io/v1/namespaces/shop/virtualservices",
    "DestinationRule": "/apis/networking.istio.io/v1/namespaces/shop/destinationrules",
    "Ingress": "/apis/networking.k8s.io/v1/namespaces/shop/ingresses",
    "CanaryRollout": "/apis/canary.dev/v1alpha1/namespaces/shop/canaryrollouts",
}


def documents(path: pathlib.Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_there_is_an_example_per_router() -> None:
    kinds = {
        models.parse_spec(doc["spec"]).traffic_routing.kind
        for path in EXAMPLES
        for doc in documents(path)
        if doc["kind"] == "CanaryRollout"
    }
    assert kinds == {"gatewayAPI", "istio", "nginx"}


def test_the_examples_are_all_checked() -> None:
    assert {p.name for p in ALL_EXAMPLES} >= {"web.yaml", "web-gated.yaml", "namespace.yaml", "web-deployment.yaml"}


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=lambda p: p.name)
def test_the_example_passes_the_schemas(path: pathlib.Path) -> None:
    rollout_schema = crds.definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for doc in documents(path):
        if doc["kind"] == "CanaryRollout":
            jsonschema.Draft4Validator(rollout_schema).validate(doc)
            models.parse_spec(doc["spec"])
        elif doc["kind"] in SCHEMAS:
            jsonschema.Draft4Validator(SCHEMAS[doc["kind"]]).validate(doc)
        else:  # a built-in kind: what the API server itself accepts, no unknown field
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
async def test_the_router_accepts_the_examples_route(
    path: pathlib.Path, cluster: clusters.EmulatedCluster, api: kube.Client
) -> None:
    created = {doc["kind"]: cluster.create(COLLECTIONS[doc["kind"]], doc) for doc in documents(path)}
    rollout = created["CanaryRollout"]
    spec = models.parse_spec(rollout["spec"])
    cluster.create(kube.deployment_path("shop"), deployment("web"))
    for service in workloads.services(rollout, spec):
        cluster.create(kube.service_path("shop"), service)

    await routing.for_rollout(spec, api, rollout).reconcile(rollout)
