"""What the webhook writes into an opted-in pod and the other side reads back.

The operator's webhook sets these names; the operator's rollout tracker finds consumer
pods and their agent by them; the key agent reads its tokens from these paths; the
application reads ``CAPTCHAAI_KEY_FILE``. One definition, so the two sides cannot
drift. The user-facing ones (the label, the annotations) are documented in the README.
"""

from __future__ import annotations

from pathlib import Path

from captchakeys import keyfile as keyfile_format

# Opt-in: the webhook's objectSelector matches this label (value "true").
INJECT_LABEL = "captchakeys.io/inject"
ANNOTATION_BINDING = "captchakeys.io/binding"
ANNOTATION_CONTAINERS = "captchakeys.io/containers"
ANNOTATION_MOUNT_PATH = "captchakeys.io/mount-path"
# A JSON object of requests/limits (cpu, memory) for the agent, over the chart's defaults.
ANNOTATION_AGENT_RESOURCES = "captchakeys.io/agent-resources"

AGENT_CONTAINER = "captcha-key-agent"
# The agent's probes, /status and /metrics; the operator reads /status here, on the port
# of this name when the pod declares one.
AGENT_PORT = 8099
AGENT_PORT_NAME = "ckb-agent"
# How the agent's interpreter runs: without docstrings and asserts (2.4 MiB less in every
# consumer pod). The sidecar image carries bytecode compiled for it, so nothing is
# compiled at start on the read-only root filesystem.
AGENT_PYTHON_ENV = {"PYTHONOPTIMIZE": "2"}
# The agent's own identity, whatever the pod's security context says.
AGENT_UID = 65532
AGENT_GID = 65532

KEY_VOLUME = "captchaai-key"
# The environment variable that tells each receiving container where its key file is,
# and where the key volume is mounted unless a pod says otherwise: the reader's defaults.
KEY_FILE_ENV = keyfile_format.ENV_VAR
KEY_MOUNT_PATH = str(keyfile_format.DEFAULT_DIR)

VAULT_TOKEN_VOLUME = "captchaai-vault-token"
VAULT_TOKEN_DIR = "/var/run/secrets/captchakeys/vault"
VAULT_TOKEN_FILE = Path(VAULT_TOKEN_DIR, "token")
# spec.source aws: instead of the Vault token, a token for STS.
AWS_TOKEN_VOLUME = "captchaai-aws-token"
AWS_TOKEN_DIR = "/var/run/secrets/captchakeys/aws"
AWS_TOKEN_FILE = Path(AWS_TOKEN_DIR, "token")
DEFAULT_AWS_AUDIENCE = "sts.amazonaws.com"  # what EKS IRSA's trust policies expect.
KUBE_API_VOLUME = "captchaai-kube-api"
KUBE_API_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
VAULT_CA_VOLUME = "captchaai-vault-ca"
VAULT_CA_DIR = "/etc/captchakeys/vault-ca"
