# syntax=docker/dockerfile:1
# captcha-key-agent: two images from one Dockerfile (`make image` builds both).
#   docker build --target operator -t captcha-key-agent:0.1.0 .
#   docker build --target sidecar  -t captcha-key-agent-sidecar:0.1.0 .
# - operator: the operator, `captchakey rotate` and the `helm test` pod
#   (`.[operator,client,aws]`, with the official `kubernetes` client);
# - sidecar: the key agent injected into every consumer pod (`.[agent,aws]`: no
#   `kubernetes` client, no cryptography, no prometheus); every consumer pod pulls it,
#   so it carries only what the agent runs. The AWS SDK (`aws`, ~35 MB) serves bindings
#   with `spec.source: aws`; where none exist, `--build-arg SIDECAR_EXTRAS=agent` drops it.
# The builder makes the wheels once (the agent's, and captchakeys-reader's from
# readers/python: the key file format the agent writes is defined there, and it is not on
# PyPI, so it is installed from its wheel by path); each target's virtualenv is installed
# from them in a stage of its own and copied alone onto a clean base: no build tools,
# sources or caches.
# PYTHON_IMAGE must provide python >= 3.11 with venv, groupadd and useradd (python:3.11-slim
# does; so does a Debian base made with debootstrap, see scripts/build_images.sh).

ARG PYTHON_IMAGE=python:3.11-slim
# Bytecode is compiled once in each image (the venvs' in their stages) at the level that
# image runs at: the base image ships none for the standard library, and the pod's root
# filesystem is read-only, so every start would compile each module it imports again:
# most of a second of the agent's start-up, which is every consumer pod's. These parts of
# the standard library are never imported. unchecked-hash: nothing depends on the
# layers' timestamps.
ARG STDLIB_SKIPPED='/(site-packages|dist-packages|test|tests|idle_test|idlelib|tkinter|turtledemo|lib2to3|ensurepip)/'

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent/ ./agent/
COPY readers/python/ ./readers/python/
RUN python -m venv /opt/build \
    && /opt/build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . ./readers/python

FROM builder AS operator-venv
ARG OPERATOR_EXTRAS=operator,client,aws
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir "$(find /wheels -name 'captchakeys_reader-*.whl')" \
       "$(find /wheels -name 'captcha_key_agent-*.whl')[${OPERATOR_EXTRAS}]" \
    && /opt/venv/bin/pip uninstall --yes pip setuptools wheel \
    && find /opt/venv -depth -name '__pycache__' -type d -exec rm -rf {} + \
    && /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv

FROM builder AS sidecar-venv
ARG SIDECAR_EXTRAS=agent,aws
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir "$(find /wheels -name 'captchakeys_reader-*.whl')" \
       "$(find /wheels -name 'captcha_key_agent-*.whl')[${SIDECAR_EXTRAS}]" \
    && /opt/venv/bin/pip uninstall --yes pip setuptools wheel \
    && find /opt/venv -depth -name '__pycache__' -type d -exec rm -rf {} + \
    && /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash -o 2 /opt/venv

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/captcha-key-agent/captcha-key-agent"
# A fixed non-root identity (65532, as distroless "nonroot"): the chart's runAsUser.
RUN groupadd --system --gid 65532 nonroot \
    && useradd --system --uid 65532 --gid 65532 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin nonroot
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The root filesystem is read-only in the pod; only /tmp (an emptyDir) is writable.
WORKDIR /tmp
ENTRYPOINT ["captchakey"]
CMD ["--help"]

FROM runtime AS sidecar
LABEL org.opencontainers.image.title="captcha-key-agent-sidecar" \
      org.opencontainers.image.description="The CaptchaAI key agent injected into consumer pods: keeps the key file current from Vault/OpenBao"
# The agent runs without docstrings and asserts (agent.contract.pod.AGENT_PYTHON_ENV, which
# the webhook injects too): 2.4 MiB less in every consumer pod. Commands' descriptions
# are docstrings, so `captchakey --help` here lists the commands without them.
ENV PYTHONOPTIMIZE=2
ARG STDLIB_SKIPPED
RUN python -m compileall -q -j 0 --invalidation-mode unchecked-hash -o 2 -x "$STDLIB_SKIPPED" \
        "$(python -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')"
COPY --from=sidecar-venv /opt/venv /opt/venv
USER 65532:65532

# The last stage is the default target: `docker build .` gives the operator image.
FROM runtime AS operator
LABEL org.opencontainers.image.title="captcha-key-agent" \
      org.opencontainers.image.description="CaptchaAI API keys from Vault/OpenBao to Kubernetes pods, rotated without restarts: the operator"
ARG STDLIB_SKIPPED
RUN python -m compileall -q -j 0 --invalidation-mode unchecked-hash -x "$STDLIB_SKIPPED" \
        "$(python -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')"
COPY --from=operator-venv /opt/venv /opt/venv
USER 65532:65532
