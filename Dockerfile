# The helmops controller image: the helmops wheel in a virtualenv, plus the official helm binary, run as
# a non-root user. No container engine runs on the development machines; CI builds it, e.g.
#   docker buildx build --platform linux/amd64,linux/arm64 -t <registry>/helmops:0.1.0 .
# tests/unit/test_dockerfile.py checks this file (pinned bases, checksum, user, entrypoint).

ARG HELM_VERSION=v3.17.2

# --- build: the helmops wheel, installed with its dependencies into /opt/helmops ----------------------------
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY helmops ./helmops
RUN python -m pip wheel --no-deps --wheel-dir /dist . \
 && python -m venv /opt/helmops \
 && /opt/helmops/bin/pip install /dist/helmops-*.whl \
 && /opt/helmops/bin/helmops --help >/dev/null

# --- helm: the official release tarball, verified against its published sha256 --------------------------
FROM python:3.11.11-slim-bookworm AS helm
ARG HELM_VERSION
ARG TARGETARCH=amd64
# sha256 of https://get.helm.sh/helm-v3.17.2-linux-<arch>.tar.gz (the release's .sha256sum files).
ARG HELM_SHA256_AMD64=90c28792a1eb5fb0b50028e39ebf826531ebfcf73f599050dbd79bab2f277241
ARG HELM_SHA256_ARM64=d78d76ec7625a94991e887ac049d93f44bd70e4876200b945f813c9e1ed1df7c
WORKDIR /tmp/helm
RUN set -eu; \
    case "${TARGETARCH}" in \
      amd64) sum="${HELM_SHA256_AMD64}" ;; \
      arm64) sum="${HELM_SHA256_ARM64}" ;; \
      *) echo "no pinned helm checksum for architecture ${TARGETARCH}" >&2; exit 1 ;; \
    esac; \
    tarball="helm-${HELM_VERSION}-linux-${TARGETARCH}.tar.gz"; \
    python -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
      "https://get.helm.sh/${tarball}" "${tarball}"; \
    echo "${sum}  ${tarball}" | sha256sum -c -; \
    tar -xzf "${tarball}" "linux-${TARGETARCH}/helm"; \
    install -m 0755 "linux-${TARGETARCH}/helm" /usr/local/bin/helm; \
    /usr/local/bin/helm version --short

# --- runtime ----------------------------------------------------------------------------------------------
FROM python:3.11.11-slim-bookworm
ARG HELM_VERSION
LABEL org.opencontainers.image.title="helmops" \
      org.opencontainers.image.description="Controller for Rancher Fleet HelmApp resources, driving helm ${HELM_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The chart mounts emptyDirs on /tmp and /home/helmops (the root filesystem is read-only) and sets the same
# variables; they are repeated here so `docker run` works too.
ENV PATH=/opt/helmops/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/helmops \
    HELM_CACHE_HOME=/home/helmops/.cache/helm \
    HELM_CONFIG_HOME=/home/helmops/.config/helm \
    HELM_DATA_HOME=/home/helmops/.local/share/helm \
    HELMOPS_HELM=/usr/local/bin/helm
COPY --from=build /opt/helmops /opt/helmops
COPY --from=helm /usr/local/bin/helm /usr/local/bin/helm
RUN mkdir -p /home/helmops \
 && chown 65532:65532 /home/helmops
WORKDIR /home/helmops
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["helmops"]
CMD ["run"]
