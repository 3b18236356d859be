# syntax=docker/dockerfile:1
# captcha-key-agent: one image for the operator, the injected key agent and `helm test`.
#   docker build -t captcha-key-agent:0.1.0 .
# Stage 1 builds a wheel and installs it with the `operator` extra (which includes the
# agent's dependencies) into a virtualenv; stage 2 copies only that virtualenv onto a
# clean slim base: no build tools, no sources, no pip cache.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
# Metadata first, so the dependency layer is reused when only the code changes.
COPY pyproject.toml README.md ./
COPY agent/ ./agent/
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-cache-dir "$(find /wheels -name 'captcha_key_agent-*.whl')[operator,client]" \
    && /opt/venv/bin/pip uninstall --yes pip setuptools wheel \
    && find /opt/venv -depth -name '__pycache__' -type d -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="captcha-key-agent" \
      org.opencontainers.image.description="CaptchaAI API keys from Vault/OpenBao to Kubernetes pods, rotated without restarts" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/captcha-key-agent/captcha-key-agent"
# A fixed non-root identity (65532, as distroless "nonroot"): the chart's runAsUser.
RUN groupadd --system --gid 65532 nonroot \
    && useradd --system --uid 65532 --gid 65532 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin nonroot
COPY --from=builder /opt/venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The root filesystem is read-only in the pod; only /tmp (an emptyDir) is writable.
WORKDIR /tmp
USER 65532:65532
ENTRYPOINT ["captchakey"]
CMD ["--help"]
