"""The API client against the emulated API server: paths that cannot escape, answers that are checked,
credentials re-read when the server stops taking the old ones."""

from __future__ import annotations

from collections.abc import Iterator

import kopf
import pytest
from helpers import deployment

from canary_bench import cluster as clusters
from canary_operator import kube


@pytest.fixture
def cluster() -> Iterator[clusters.EmulatedCluster]:
    with clusters.EmulatedCluster() as started:
        for namespace in ("shop", "other-ns"):
            started.create_namespace(namespace)
        victim = deployment("victim")
        victim["metadata"]["namespace"] = "other-ns"
        started.create(kube.deployment_path("other-ns"), victim)
        started.create(kube.deployment_path("shop"), deployment("web"))
        yield started


def client(cluster: clusters.EmulatedCluster, token: str = "", **options: object) -> kube.Client:
    return kube.Client(kopf.ConnectionInfo(server=cluster.url, token=token or None), **options)  # type: ignore[arg-type]


async def test_a_name_with_slashes_stays_one_path_segment_and_reads_nothing_of_another_namespace(
    cluster: clusters.EmulatedCluster,
) -> None:
    async with client(cluster) as api:
        assert await api.get(kube.deployment_path("shop", "../../other-ns/deployments/victim")) is None
        assert await api.get(kube.deployment_path("shop", "..%2F..%2Fother-ns%2Fdeployments%2Fvictim")) is None
        assert (await api.get(kube.deployment_path("other-ns", "victim")) or {})["metadata"]["name"] == "victim"


@pytest.mark.parametrize("name", ["", ".", ".."])
def test_names_that_are_path_navigation_are_refused_before_any_request(name: str) -> None:
    with pytest.raises(kube.InvalidNameError):
        kube.deployment_path("shop", name)


async def test_an_answer_naming_another_object_than_asked_is_an_error(cluster: clusters.EmulatedCluster) -> None:
    victim = cluster.deployment("other-ns", "victim")

    def answer_the_victim() -> None:
        cluster.emulator["get /apis/apps/v1/namespaces/shop/deployments/web"] << victim

    cluster.call(answer_the_victim)
    async with client(cluster) as api:
        with pytest.raises(kube.UnexpectedObjectError, match="asked for shop/web, the API answered other-ns/victim"):
            await api.get(kube.deployment_path("shop", "web"))


async def test_a_401_logs_in_again_and_retries_once_with_the_new_token(cluster: clusters.EmulatedCluster) -> None:
    def only_the_new_token() -> None:
        cluster.emulator[lambda request: request.headers.get("Authorization") != "Bearer new"] << 401

    cluster.call(only_the_new_token)
    logins: list[str] = []

    def relogin() -> kopf.ConnectionInfo:
        logins.append("again")
        return kopf.ConnectionInfo(server=cluster.url, token="new")

    async with client(cluster, token="old", relogin=relogin) as api:
        assert (await api.get(kube.deployment_path("shop", "web")) or {})["metadata"]["name"] == "web"
        assert (await api.get(kube.deployment_path("shop", "web")) or {})["metadata"]["name"] == "web"
    assert logins == ["again"], "logged in again once; the new token is kept"


async def test_a_401_with_no_new_credentials_is_reported_not_retried_for_ever(
    cluster: clusters.EmulatedCluster,
) -> None:
    cluster.call(lambda: cluster.emulator["get"] << 401)
    async with client(
        cluster, token="old", relogin=lambda: kopf.ConnectionInfo(server=cluster.url, token="old")
    ) as api:
        with pytest.raises(kube.ApiError) as refused:
            await api.get(kube.deployment_path("shop", "web"))
    assert refused.value.code == 401
