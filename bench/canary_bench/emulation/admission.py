"""
What the API server does to an object before it stores it: defaulting and validation.

The metadata rules hold for every kind; the defaults and rules of the built-in kinds the operator
writes (Deployments, Services, Namespaces, CRDs) are the ones it depends on: a Deployment's
selector must match its template and never change, a Service keeps its cluster IP, a CRD is
established at once. Custom resources are checked against their schemas (:mod:`.schemas`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from canary_bench.emulation import bodies, errors, selecting, times

_DNS_SUBDOMAIN: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"


def validate_metadata(meta: bodies.Body, *, dns_label: bool, check_name: bool) -> list[errors.Cause]:
    """The rules of names, labels and annotations; values that are not strings cannot even be decoded (400)."""
    for field in ("labels", "annotations"):
        values = meta.get(field)
        if values is not None and (
            not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values())
        ):
            raise errors.bad_request(f"json: cannot unmarshal metadata.{field}: values must be strings")
    causes: list[errors.Cause] = []
    name = meta.get("name", "")
    if check_name:
        if dns_label and (len(name) > 63 or not re.fullmatch(_DNS_LABEL, name)):
            causes.append(
                errors.Cause.invalid(
                    "metadata.name",
                    name,
                    (
                        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                        "and must start and end with an alphanumeric character "
                        f"(regex used for validation is '{_DNS_LABEL}')"
                    ),
                )
            )
        elif not dns_label and (len(name) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, name)):
            causes.append(
                errors.Cause.invalid(
                    "metadata.name",
                    name,
                    (
                        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                        "'-' or '.', and must start and end with an alphanumeric character "
                        f"(regex used for validation is '{_DNS_SUBDOMAIN}')"
                    ),
                )
            )
    for field in ("labels", "annotations"):
        for key, value in (meta.get(field) or {}).items():
            if not re.fullmatch(selecting.LABEL_KEY, key) or len(key.rsplit("/", 1)[-1]) > 63:
                causes.append(
                    errors.Cause.invalid(
                        f"metadata.{field}",
                        key,
                        "name part must consist of alphanumeric "
                        "characters, '-', '_' or '.', and must start and end with an "
                        "alphanumeric character",
                    )
                )
            if field == "labels" and (len(value) > 63 or not re.fullmatch(selecting.LABEL_VALUE, value)):
                causes.append(
                    errors.Cause.invalid(
                        "metadata.labels",
                        value,
                        "a valid label must be an empty string or "
                        "consist of alphanumeric characters, '-', '_' or '.', and must start "
                        "and end with an alphanumeric character",
                    )
                )
    return causes


_POD_DEFAULTS: Final[Mapping[str, Any]] = {
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 30,
    "dnsPolicy": "ClusterFirst",
    "securityContext": {},
    "schedulerName": "default-scheduler",
}


def _default_container(container: bodies.Body) -> None:
    """The defaults the API server gives every container of a pod template."""
    image = str(container.get("image", ""))
    tagged = ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
    container.setdefault("imagePullPolicy", "IfNotPresent" if tagged or "@" in image else "Always")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def admit_deployment(obj: bodies.Body, old: bodies.Body | None) -> list[errors.Cause]:
    """Default a Deployment as the API does and check the rules it enforces (the selector above all)."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {}).setdefault("maxUnavailable", "25%")
        strategy["rollingUpdate"].setdefault("maxSurge", "25%")
    pod = bodies.resolve(spec, "template", "spec")
    if isinstance(pod, dict):
        for field, value in _POD_DEFAULTS.items():
            pod.setdefault(field, copy.deepcopy(value))
        for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
            if isinstance(container, dict):
                _default_container(container)
    causes: list[errors.Cause] = []
    replicas = spec["replicas"]
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        causes.append(errors.Cause.invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
    selector = spec.get("selector")
    labels = bodies.resolve(spec, "template", "metadata", "labels") or {}
    if not selector:
        causes.append(errors.Cause.required("spec.selector"))
    elif not selecting.selector_requirements(selector):
        causes.append(errors.Cause.invalid("spec.selector", selector, "empty selector is invalid for deployment"))
    elif not all(r.matches(labels) for r in selecting.selector_requirements(selector)):
        causes.append(
            errors.Cause.invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")
        )
    if old is not None and selector != bodies.resolve(old, "spec", "selector"):
        causes.append(errors.Cause.invalid("spec.selector", selector, "field is immutable"))
    containers = bodies.resolve(spec, "template", "spec", "containers")
    if not containers:
        causes.append(errors.Cause.required("spec.template.spec.containers"))
    for index, container in enumerate(containers or []):
        for field in ("name", "image"):
            if not bodies.resolve(container, field):
                causes.append(errors.Cause.required(f"spec.template.spec.containers[{index}].{field}"))
    return causes


def admit_service(obj: bodies.Body, old: bodies.Body | None, cluster_ips: Iterator[int]) -> list[errors.Cause]:
    """Default a Service; a new one takes its cluster IP from ``cluster_ips``, an old one keeps its own."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        old_ip = bodies.resolve(old, "spec", "clusterIP")
        if "clusterIP" not in spec and old_ip is not None:
            spec["clusterIP"] = old_ip
        elif "clusterIP" not in spec:
            number = next(cluster_ips)
            spec["clusterIP"] = f"10.96.{number // 250}.{number % 250 + 1}"
        elif old_ip is not None and spec["clusterIP"] != old_ip:
            return [errors.Cause.invalid("spec.clusterIPs[0]", spec["clusterIP"], "may not change once set")]
        spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    causes: list[errors.Cause] = []
    for index, port in enumerate(spec.get("ports") or []):
        port.setdefault("protocol", "TCP")
        if "port" not in port:
            causes.append(errors.Cause.required(f"spec.ports[{index}].port"))
        else:
            port.setdefault("targetPort", port["port"])
    obj.setdefault("status", {}).setdefault("loadBalancer", {})
    return causes


def admit_crd(obj: bodies.Body) -> list[errors.Cause]:
    """Check a CRD's names and give it the status of one accepted at once."""
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    causes = [errors.Cause.required(f"spec.{field}") for field in ("group", "versions") if not spec.get(field)]
    causes += [errors.Cause.required(f"spec.names.{field}") for field in ("plural", "kind") if not names.get(field)]
    expected = f"{names.get('plural')}.{spec.get('group')}"
    if not causes and obj["metadata"]["name"] != expected:
        causes.append(
            errors.Cause.invalid("metadata.name", obj["metadata"]["name"], 'must be spec.names.plural+"."+spec.group')
        )
    if not causes:
        storage = [v["name"] for v in spec["versions"] if v.get("storage")]
        obj["status"] = {
            "acceptedNames": names,
            "storedVersions": storage,
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": times.format_time(times.now()),
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": times.format_time(times.now()),
                },
            ],
        }
    return causes


def default_namespace(obj: bodies.Body) -> None:
    """A namespace is born Active, with the ``kubernetes`` finalizer and its name as a label."""
    meta = obj["metadata"]
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")
    meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
