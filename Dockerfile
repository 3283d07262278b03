# The operator image: `docker build -t canary-operator:0.1.0 .` (BuildKit, Docker's default builder
# since 23.0, for the RUN --mount below).
# Two stages: the first builds wheels for the operator and every dependency, the second
# installs them offline, so the final image holds no build tools, caches, wheels or sources.

# The base of both stages. Where no image can be pulled, a stand-in with Debian's own Python works
# (docs/release.md says how to make one with debootstrap): --build-arg PYTHON_IMAGE=<that image>.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# The install is driven by the project's own metadata: dependencies and the
# `canary-operator` entry point come from pyproject.toml.
COPY pyproject.toml ./
COPY operator/ operator/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .


FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric uid, so Kubernetes can check runAsNonRoot without resolving a name.
RUN groupadd --gid 10001 canary \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin canary

RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/canary_operator-*.whl

USER 10001:10001
# /metrics, /healthz and /readyz (CANARY_HTTP_PORT)
EXPOSE 8080
ENTRYPOINT ["canary-operator"]
