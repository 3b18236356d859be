#!/usr/bin/env bash
# Vault / OpenBao side of captcha-key-agent: policies, auth methods and roles, per
# environment. Idempotent: run it again after changing a parameter. See docs/vault-setup.md.
#
# Needs a token allowed to manage policies, auth methods and mounts (VAULT_TOKEN or a
# `bao/vault login`), and VAULT_ADDR (BAO_ADDR is honoured too).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/vault-setup.sh [options]

Creates, per environment ENV:
  policy  captcha-worker-ENV   read  <kv-mount>/data/<prefix>/ENV and its metadata
  role    captcha-worker-ENV   kubernetes auth, bound to the workers' service accounts in
                               their namespace (and jwt / approle roles when asked)
and once:
  policy  captcha-key-operator read  <kv-mount>/metadata/<prefix>/* only (never a key)
  policy  captcha-key-rotator  write new versions (for `captchakey rotate`; bound to nothing)
  role    captcha-key-operator kubernetes auth, bound to the operator's service account

Options (environment variable in brackets):
  --environments LIST        comma-separated environments            [CKA_ENVIRONMENTS=dev,staging,prod]
  --kv-mount PATH            KV v2 mount; enabled when missing       [CKA_KV_MOUNT=secret]
  --path-prefix PATH         path under the mount                    [CKA_PATH_PREFIX=captchaai]
  --worker-namespace PATTERN namespace of ENV's workers; {env} is replaced
                                                                     [CKA_WORKER_NAMESPACE=solver-{env}]
  --worker-service-accounts LIST  service accounts of the workers (docs/examples runs
                             as `solver`)                            [CKA_WORKER_SERVICE_ACCOUNTS=solver]
  --operator-namespace NS    the chart's release namespace (README: helm install -n
                             captcha-system)                         [CKA_OPERATOR_NAMESPACE=captcha-system]
  --operator-service-account SA  the chart's operator service account, <release>-operator
                             for release captcha-key-agent           [CKA_OPERATOR_SERVICE_ACCOUNT=captcha-key-agent-operator]
  --audience AUD             audience of the projected tokens        [CKA_AUDIENCE=vault]
  --token-ttl DURATION       TTL of the Vault tokens issued          [CKA_TOKEN_TTL=1h]
  --kubernetes-mount PATH    kubernetes auth mount ("" to skip)      [CKA_KUBERNETES_MOUNT=kubernetes]
  --kubernetes-host URL      API server for TokenReview; configures the mount when set
                                                                     [CKA_KUBERNETES_HOST]
  --kubernetes-ca-file FILE  PEM CA of that API server               [CKA_KUBERNETES_CA_FILE]
  --token-reviewer-jwt-file FILE  JWT Vault uses for TokenReview when it runs outside the
                             cluster (sets disable_local_ca_jwt)     [CKA_TOKEN_REVIEWER_JWT_FILE]
  --jwt-mount PATH           also set up jwt auth at PATH            [CKA_JWT_MOUNT]
  --jwt-discovery-url URL    OIDC discovery URL of the cluster's issuer  [CKA_JWT_DISCOVERY_URL]
  --jwt-pubkeys-file FILE    or: PEM public keys that sign SA tokens [CKA_JWT_PUBKEYS_FILE]
  --approle                  also create AppRole roles for out-of-cluster workers
                                                                     [CKA_APPROLE=0]
  --approle-mount PATH                                               [CKA_APPROLE_MOUNT=approle]
  --dry-run                  print the commands, change nothing      [CKA_DRY_RUN=0]
  -h, --help

The CLI is $VAULT_BIN, else `bao`, else `vault` from PATH.
EOF
}

environments=${CKA_ENVIRONMENTS:-dev,staging,prod}
kv_mount=${CKA_KV_MOUNT:-secret}
path_prefix=${CKA_PATH_PREFIX:-captchaai}
worker_namespace=${CKA_WORKER_NAMESPACE:-solver-{env\}}
worker_sas=${CKA_WORKER_SERVICE_ACCOUNTS:-solver}
operator_namespace=${CKA_OPERATOR_NAMESPACE:-captcha-system}
operator_sa=${CKA_OPERATOR_SERVICE_ACCOUNT:-captcha-key-agent-operator}
audience=${CKA_AUDIENCE:-vault}
token_ttl=${CKA_TOKEN_TTL:-1h}
k8s_mount=${CKA_KUBERNETES_MOUNT-kubernetes}
k8s_host=${CKA_KUBERNETES_HOST:-}
k8s_ca_file=${CKA_KUBERNETES_CA_FILE:-}
reviewer_jwt_file=${CKA_TOKEN_REVIEWER_JWT_FILE:-}
jwt_mount=${CKA_JWT_MOUNT:-}
jwt_discovery_url=${CKA_JWT_DISCOVERY_URL:-}
jwt_pubkeys_file=${CKA_JWT_PUBKEYS_FILE:-}
approle=${CKA_APPROLE:-0}
approle_mount=${CKA_APPROLE_MOUNT:-approle}
dry_run=${CKA_DRY_RUN:-0}

die() { echo "vault-setup: $*" >&2; exit 2; }
need_arg() { [ "$#" -ge 2 ] || die "$1 needs a value"; }

while [ "$#" -gt 0 ]; do
  case "$1" in
    --environments) need_arg "$@"; environments=$2; shift 2 ;;
    --kv-mount) need_arg "$@"; kv_mount=$2; shift 2 ;;
    --path-prefix) need_arg "$@"; path_prefix=$2; shift 2 ;;
    --worker-namespace) need_arg "$@"; worker_namespace=$2; shift 2 ;;
    --worker-service-accounts) need_arg "$@"; worker_sas=$2; shift 2 ;;
    --operator-namespace) need_arg "$@"; operator_namespace=$2; shift 2 ;;
    --operator-service-account) need_arg "$@"; operator_sa=$2; shift 2 ;;
    --audience) need_arg "$@"; audience=$2; shift 2 ;;
    --token-ttl) need_arg "$@"; token_ttl=$2; shift 2 ;;
    --kubernetes-mount) need_arg "$@"; k8s_mount=$2; shift 2 ;;
    --kubernetes-host) need_arg "$@"; k8s_host=$2; shift 2 ;;
    --kubernetes-ca-file) need_arg "$@"; k8s_ca_file=$2; shift 2 ;;
    --token-reviewer-jwt-file) need_arg "$@"; reviewer_jwt_file=$2; shift 2 ;;
    --jwt-mount) need_arg "$@"; jwt_mount=$2; shift 2 ;;
    --jwt-discovery-url) need_arg "$@"; jwt_discovery_url=$2; shift 2 ;;
    --jwt-pubkeys-file) need_arg "$@"; jwt_pubkeys_file=$2; shift 2 ;;
    --approle) approle=1; shift ;;
    --approle-mount) need_arg "$@"; approle_mount=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

# --- checks ------------------------------------------------------------------------------
dns_label='^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'
IFS=',' read -r -a env_list <<<"$environments"
[ "${#env_list[@]}" -gt 0 ] || die "--environments is empty"
for env in "${env_list[@]}"; do
  [[ $env =~ $dns_label ]] || die "environment '$env' is not a DNS label"
done
[[ $path_prefix != /* && $path_prefix != */ && $path_prefix != *..* ]] \
  || die "--path-prefix must not start or end with '/' nor contain '..'"
if [ -n "$k8s_host" ] && [ -z "$k8s_ca_file" ]; then
  die "--kubernetes-host needs --kubernetes-ca-file"
fi
if [ -n "$jwt_mount" ] && [ -z "$jwt_discovery_url$jwt_pubkeys_file" ]; then
  die "--jwt-mount needs --jwt-discovery-url or --jwt-pubkeys-file"
fi

if [ -n "${VAULT_BIN:-}" ]; then
  vault=$VAULT_BIN
elif command -v bao >/dev/null 2>&1; then
  vault=bao
elif command -v vault >/dev/null 2>&1; then
  vault=vault
else
  die "neither bao nor vault found in PATH; set VAULT_BIN"
fi
# Both CLIs read their own variable: accept either.
if [ -n "${VAULT_ADDR:-}" ] && [ -z "${BAO_ADDR:-}" ]; then export BAO_ADDR=$VAULT_ADDR; fi
if [ -n "${BAO_ADDR:-}" ] && [ -z "${VAULT_ADDR:-}" ]; then export VAULT_ADDR=$BAO_ADDR; fi
if [ -n "${VAULT_TOKEN:-}" ] && [ -z "${BAO_TOKEN:-}" ]; then export BAO_TOKEN=$VAULT_TOKEN; fi
if [ -n "${BAO_TOKEN:-}" ] && [ -z "${VAULT_TOKEN:-}" ]; then export VAULT_TOKEN=$BAO_TOKEN; fi

run() {
  echo "+ $vault $*" >&2
  if [ "$dry_run" != 1 ]; then "$vault" "$@" >/dev/null; fi
}

# Enable a secrets engine / auth method only when its path is free (idempotent).
mounted() { # $1 = secrets|auth, $2 = path
  [ "$dry_run" = 1 ] && return 1
  local listing # not piped into grep -q: with pipefail, its early exit fails the pipe
  listing=$("$vault" "$1" list -format=json)
  case $listing in *"\"${2%/}/\""*) return 0 ;; *) return 1 ;; esac
}
ensure_auth() { # $1 = type, $2 = path
  if mounted auth "$2"; then echo "= auth method at $2/ already enabled" >&2
  else run auth enable -path="$2" "$1"; fi
}

ns_for() { printf '%s' "${worker_namespace//\{env\}/$1}"; }

# --- KV v2 ---------------------------------------------------------------------------------
if mounted secrets "$kv_mount"; then
  echo "= secrets engine at $kv_mount/ already enabled" >&2
else
  run secrets enable -path="$kv_mount" -version=2 kv
fi

# --- policies ------------------------------------------------------------------------------
policy_dir=$(mktemp -d)
trap 'rm -rf "$policy_dir"' EXIT

for env in "${env_list[@]}"; do
  cat >"$policy_dir/worker-$env.hcl" <<EOF
# captcha-worker-$env: the key agents of $env's workers. Read this environment's key and
# its metadata (the agent checks the current version before fetching data). Nothing else.
path "$kv_mount/data/$path_prefix/$env" {
  capabilities = ["read"]
}
path "$kv_mount/metadata/$path_prefix/$env" {
  capabilities = ["read"]
}
EOF
  run policy write "captcha-worker-$env" "$policy_dir/worker-$env.hcl"
done

cat >"$policy_dir/operator.hcl" <<EOF
# captcha-key-operator: current versions of every environment's key. Metadata only: the
# operator never reads a key.
path "$kv_mount/metadata/$path_prefix/*" {
  capabilities = ["read"]
}
EOF
run policy write captcha-key-operator "$policy_dir/operator.hcl"

cat >"$policy_dir/rotator.hcl" <<EOF
# captcha-key-rotator: for the people or pipeline that run \`captchakey rotate\`: write a
# new version, read versions. Attach it to their own identity (OIDC, userpass...).
path "$kv_mount/data/$path_prefix/*" {
  capabilities = ["create", "update"]
}
path "$kv_mount/metadata/$path_prefix/*" {
  capabilities = ["read", "list"]
}
EOF
run policy write captcha-key-rotator "$policy_dir/rotator.hcl"

# --- Kubernetes auth -----------------------------------------------------------------------
if [ -n "$k8s_mount" ]; then
  ensure_auth kubernetes "$k8s_mount"
  if [ -n "$k8s_host" ]; then
    config=(kubernetes_host="$k8s_host" kubernetes_ca_cert=@"$k8s_ca_file")
    if [ -n "$reviewer_jwt_file" ]; then
      config+=(token_reviewer_jwt=@"$reviewer_jwt_file" disable_local_ca_jwt=true)
    fi
    run write "auth/$k8s_mount/config" "${config[@]}"
  fi
  for env in "${env_list[@]}"; do
    run write "auth/$k8s_mount/role/captcha-worker-$env" \
      bound_service_account_names="$worker_sas" \
      bound_service_account_namespaces="$(ns_for "$env")" \
      audience="$audience" \
      token_policies="captcha-worker-$env" \
      token_ttl="$token_ttl" token_max_ttl="$token_ttl"
  done
  run write "auth/$k8s_mount/role/captcha-key-operator" \
    bound_service_account_names="$operator_sa" \
    bound_service_account_namespaces="$operator_namespace" \
    audience="$audience" \
    token_policies=captcha-key-operator \
    token_ttl="$token_ttl" token_max_ttl="$token_ttl"
fi

# --- JWT auth (alternative: Vault validates the token's signature itself, no TokenReview) --
if [ -n "$jwt_mount" ]; then
  ensure_auth jwt "$jwt_mount"
  if [ -n "$jwt_discovery_url" ]; then
    run write "auth/$jwt_mount/config" oidc_discovery_url="$jwt_discovery_url"
  else
    run write "auth/$jwt_mount/config" jwt_validation_pubkeys=@"$jwt_pubkeys_file"
  fi
  subjects() { # $1 = namespace, $2 = comma-separated service accounts -> JSON list
    local out="" sa
    IFS=',' read -r -a sas <<<"$2"
    for sa in "${sas[@]}"; do out="$out${out:+, }\"system:serviceaccount:$1:$sa\""; done
    printf '[%s]' "$out"
  }
  for env in "${env_list[@]}"; do
    # bound_claims is a map: only a JSON request body can carry it.
    printf '{"role_type": "jwt", "user_claim": "sub", "bound_audiences": ["%s"],
      "bound_claims": {"sub": %s}, "token_policies": ["captcha-worker-%s"],
      "token_ttl": "%s", "token_max_ttl": "%s"}' \
      "$audience" "$(subjects "$(ns_for "$env")" "$worker_sas")" "$env" "$token_ttl" "$token_ttl" \
      | run write "auth/$jwt_mount/role/captcha-worker-$env" -
  done
  run write "auth/$jwt_mount/role/captcha-key-operator" \
    role_type=jwt user_claim=sub bound_audiences="$audience" \
    bound_subject="system:serviceaccount:$operator_namespace:$operator_sa" \
    token_policies=captcha-key-operator \
    token_ttl="$token_ttl" token_max_ttl="$token_ttl"
fi

# --- AppRole (workers outside Kubernetes, as the guide recommends for production) ---------
if [ "$approle" = 1 ]; then
  ensure_auth approle "$approle_mount"
  for env in "${env_list[@]}"; do
    run write "auth/$approle_mount/role/captcha-worker-$env" \
      token_policies="captcha-worker-$env" \
      token_ttl="$token_ttl" token_max_ttl="$token_ttl" \
      secret_id_ttl=720h secret_id_num_uses=0
  done
fi

echo "vault-setup: done (environments: ${env_list[*]})" >&2
