#!/usr/bin/env bash
# Build the two images of the Dockerfile (targets `operator` and `sidecar`), smoke-run
# each as the chart runs it (uid 65532, read-only root filesystem, no network) and print
# their sizes. `make image` runs this; `make clean` runs it with `clean`.
#
#   scripts/build_images.sh          # build, smoke-run, print sizes
#   scripts/build_images.sh clean    # remove the images and the base this script made
#
# Environment: IMAGE_TAG (0.1.0), OPERATOR_IMAGE, SIDECAR_IMAGE (localhost/...),
# PYTHON_IMAGE (python:3.11-slim), BUILD_DIR (build), LOCAL_BASE_IMAGE (the debootstrap
# base's name, localhost/captcha-key-agent-base:debian-bookworm), OPERATOR_EXTRAS and
# SIDECAR_EXTRAS (the Dockerfile's defaults; SIDECAR_EXTRAS=agent drops the AWS SDK).
#
# Needs buildah (Debian: apt-get install buildah); the smoke run uses podman where it can
# start containers, else chroot on the image's root filesystem mounted read-only. When the
# base image cannot be pulled (no registry reachable, as on our CI machines), it builds a
# stand-in base from Debian's own packages with debootstrap (bookworm's python3 3.11,
# python3-venv): root is required for that, as for debootstrap itself.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${IMAGE_TAG:-0.1.0}
OPERATOR=${OPERATOR_IMAGE:-localhost/captcha-key-agent}
SIDECAR=${SIDECAR_IMAGE:-localhost/captcha-key-agent-sidecar}
BASE=${PYTHON_IMAGE:-python:3.11-slim}
BUILD_DIR=${BUILD_DIR:-build}
LOCAL_BASE=${LOCAL_BASE_IMAGE:-localhost/captcha-key-agent-base:debian-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

die() { echo "build_images: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

clean() {
    if have buildah; then
        for image in "$OPERATOR:$TAG" "$SIDECAR:$TAG" "$LOCAL_BASE"; do
            buildah rmi "$image" >/dev/null 2>&1 && echo "removed $image" || true
        done
    fi
    rm -rf "$BUILD_DIR/base-rootfs" "$BUILD_DIR/pip.conf" "$BUILD_DIR/podman.err"
}

# A base image from Debian packages: what python:3.11-slim provides that the Dockerfile
# uses (python 3.11 with venv and pip, groupadd/useradd, CA certificates), minus docs.
debootstrap_base() {
    have debootstrap || die "cannot pull $BASE and debootstrap is missing (apt-get install debootstrap)"
    [ "$(id -u)" = 0 ] || die "cannot pull $BASE; building a debootstrap base needs root"
    local rootfs="$BUILD_DIR/base-rootfs"
    if [ ! -x "$rootfs/usr/bin/python3" ]; then
        rm -rf "$rootfs"
        mkdir -p "$BUILD_DIR"
        # Its progress goes to stderr: this function's stdout is the base's name alone.
        debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
            bookworm "$rootfs" "$MIRROR" >&2
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
            "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
        find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    fi
    local ctr mnt
    ctr=$(buildah from scratch)
    mnt=$(buildah mount "$ctr")
    cp -a "$rootfs/." "$mnt/"
    buildah umount "$ctr" >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd /bin/sh "$ctr"
    buildah commit --quiet "$ctr" "$LOCAL_BASE" >/dev/null
    buildah rm "$ctr" >/dev/null
    echo "$LOCAL_BASE"
}

choose_base() {
    if buildah inspect --type image "$BASE" >/dev/null 2>&1 || timeout 60 buildah pull --quiet "$BASE" >/dev/null 2>&1; then
        echo "$BASE"
    else
        echo "build_images: cannot pull $BASE (no registry reachable?): using a Debian base made with debootstrap" >&2
        if buildah inspect --type image "$LOCAL_BASE" >/dev/null 2>&1; then
            echo "$LOCAL_BASE"
        else
            debootstrap_base
        fi
    fi
}

# Run a command in an image as the chart runs the container: uid 65532, read-only root
# filesystem, no network. With podman when it can start containers here; otherwise (e.g.
# crun refusing to set rlimits without CAP_SYS_RESOURCE in a sandbox) on the image's own
# root filesystem, mounted read-only, with chroot as uid 65532.
in_image() {
    local image=$1 entrypoint=$2
    shift 2
    if have podman; then
        local status=0
        podman run --rm --read-only --user 65532:65532 --network none \
            --entrypoint "$entrypoint" "$image" "$@" 2>"$BUILD_DIR/podman.err" || status=$?
        # Only a container that could not start falls back; a failing command fails.
        grep -q "OCI permission denied" "$BUILD_DIR/podman.err" || {
            cat "$BUILD_DIR/podman.err" >&2
            return "$status"
        }
    fi
    local ctr mnt ro status=0
    ctr=$(buildah from --quiet "$image")
    mnt=$(buildah mount "$ctr")
    ro=$(mktemp -d)
    mount --bind "$mnt" "$ro" && mount -o remount,bind,ro "$ro"
    env -i PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/nonexistent \
        PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
        chroot --userspec=65532:65532 "$ro" /bin/sh -c 'cd /tmp && exec "$0" "$@"' \
        "$entrypoint" "$@" || status=$?
    umount "$ro"
    rmdir "$ro"
    buildah umount "$ctr" >/dev/null
    buildah rm "$ctr" >/dev/null
    return "$status"
}

# Exit 1, naming them, if any module the agent imports has no bytecode at this level.
FROM_BYTECODE='
import os, sys
import agent.cli, agent.sidecar.firstkey, agent.sidecar.watch
missing = [m.__cached__ for m in list(sys.modules.values())
           if getattr(m, "__cached__", None) and not os.path.exists(m.__cached__)]
sys.exit("no bytecode: " + " ".join(missing) if missing else 0)
'

smoke() {
    local image=$1
    in_image "$image" captchakey --help >/dev/null \
        || die "$image: captchakey --help failed as uid 65532 on a read-only root filesystem"
    in_image "$image" /bin/sh -c 'touch /probe 2>/dev/null && exit 1; [ "$(id -u)" = 65532 ]' \
        || die "$image: the smoke run was not read-only as uid 65532"
    echo "$image: captchakey --help runs as uid 65532 with a read-only root filesystem"
}

# Behind a TLS-intercepting proxy, pip in the build needs the host's CA bundle: mount it
# and a pip.conf naming it into the RUN steps only (never into an image layer).
build_trust() {
    local bundle=${BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
    [ -f "$bundle" ] || return 0
    mkdir -p "$BUILD_DIR"
    printf '[global]\ncert = /etc/ssl/certs/build-host-ca.crt\n' > "$BUILD_DIR/pip.conf"
    echo "--volume=$bundle:/etc/ssl/certs/build-host-ca.crt:ro"
    echo "--volume=$PWD/$BUILD_DIR/pip.conf:/etc/pip.conf:ro"
}

main() {
    [ "${1:-}" = clean ] && { clean; return; }
    have buildah || die "buildah is required (apt-get install buildah)"
    local base
    base=$(choose_base)
    mkdir -p "$BUILD_DIR"
    local -a trust extras=()
    mapfile -t trust < <(build_trust)
    [ -n "${OPERATOR_EXTRAS:-}" ] && extras+=(--build-arg "OPERATOR_EXTRAS=$OPERATOR_EXTRAS")
    [ -n "${SIDECAR_EXTRAS:-}" ] && extras+=(--build-arg "SIDECAR_EXTRAS=$SIDECAR_EXTRAS")
    for target in operator sidecar; do
        local name=$OPERATOR
        [ "$target" = sidecar ] && name=$SIDECAR
        # chroot isolation: RUN steps need no OCI runtime or cgroup setup from the host.
        buildah bud --quiet --layers --isolation "${BUILDAH_ISOLATION:-chroot}" --network host \
            "${trust[@]}" "${extras[@]}" --target "$target" \
            --build-arg "PYTHON_IMAGE=$base" --build-arg "VERSION=$TAG" -t "$name:$TAG" . >/dev/null
        smoke "$name:$TAG"
    done
    in_image "$SIDECAR:$TAG" python -c \
        'import importlib.util as u, sys; sys.exit(u.find_spec("kubernetes") is not None)' \
        || die "$SIDECAR:$TAG carries the kubernetes client: the sidecar must not"
    echo "$SIDECAR:$TAG: no kubernetes client"
    in_image "$SIDECAR:$TAG" env PYTHONOPTIMIZE=2 python -c "$FROM_BYTECODE" \
        || die "$SIDECAR:$TAG: the agent's imports are not all compiled for PYTHONOPTIMIZE=2"
    echo "$SIDECAR:$TAG: the agent starts from bytecode compiled for PYTHONOPTIMIZE=2"
    if [[ ",${SIDECAR_EXTRAS:-aws}," == *",aws,"* ]]; then
        in_image "$SIDECAR:$TAG" python -c 'import agent.aws.secrets' \
            || die "$SIDECAR:$TAG cannot serve bindings with spec.source: aws"
        echo "$SIDECAR:$TAG: the AWS source imports"
    fi
    for image in "$OPERATOR:$TAG" "$SIDECAR:$TAG"; do
        printf '%s: /opt/venv %s\n' "$image" "$(in_image "$image" du -sh /opt/venv | cut -f1)"
    done
    buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E "^($OPERATOR|$SIDECAR|${base%%:*}):" || true
}

main "$@"
