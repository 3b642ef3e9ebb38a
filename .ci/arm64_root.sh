#!/usr/bin/env bash
# An AArch64 Python for the CI, run on an x86-64 machine by qemu-user.
#
#   sudo bash .ci/arm64_root.sh ROOT                 # build ROOT once (a few minutes)
#   sudo bash .ci/arm64_root.sh ROOT run CMD ...     # run CMD in the project, in ROOT
#
# ROOT is a Debian bookworm arm64 file system (CPython 3.11) with a virtual
# environment at /opt/venv holding the AArch64 wheels of the test
# dependencies.  The wheels are fetched by the host's pip (quick) and
# installed offline inside the root (emulated, slow to resolve otherwise).
# Commands see the project read-only at /project, with PYTHONPATH pointing
# there and a Numba cache of their own; nothing of the host's environment
# (PIP_*, NUMBA_*) leaks in except ARM_ENV ("NAME=value ...").
set -euo pipefail
ROOT=$(realpath -m "${1:?usage: arm64_root.sh ROOT [run CMD ...]}")
shift
PROJECT=$(cd "$(dirname "$0")/.." && pwd)
WHEELS=(numba numpy pytest hypothesis scipy)

in_root() {
    chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/opt/venv/bin:/usr/bin:/bin "$@"
}

build() {
    local started=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    if ! command -v mmdebstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
        apt-get update -q
        apt-get install -y -q qemu-user-static binfmt-support mmdebstrap
    fi
    # qemu-aarch64 must be registered with the F flag (opened at registration)
    # so that it also runs inside the chroot.
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --import qemu-aarch64
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64

    if [ ! -x "$ROOT/usr/bin/python3" ]; then
        local mirror
        mirror=$({ grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
                   /etc/apt/sources.list.d/ 2>/dev/null || true; } | head -n 1 | tr -d ' ')
        mirror=${mirror:-http://deb.debian.org/debian}
        rm -rf "$ROOT"
        mkdir -p "$(dirname "$ROOT")"
        mmdebstrap --architectures=arm64 --variant=apt \
            --include=python3,python3-venv,ca-certificates,libgomp1 bookworm "$ROOT" "$mirror"
    fi
    echo "arm64 root: $((SECONDS - started)) s"

    local wheels="$ROOT/tmp/wheels"
    mkdir -p "$wheels"
    python3 -m pip download -q -d "$wheels" --only-binary=:all: --implementation cp \
        --python-version 3.11 --platform manylinux2014_aarch64 \
        --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 "${WHEELS[@]}"
    in_root /usr/bin/python3 -m venv /opt/venv
    in_root /opt/venv/bin/pip install -q --no-index --find-links /tmp/wheels "${WHEELS[@]}"
    rm -rf "$wheels"
    echo "arm64 venv: $((SECONDS - started)) s"
}

run() {
    mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
    mountpoint -q "$ROOT/dev" || mount --rbind /dev "$ROOT/dev"
    mkdir -p "$ROOT/project"
    mountpoint -q "$ROOT/project" && umount "$ROOT/project"
    mount --bind -o ro "$PROJECT" "$ROOT/project"
    trap 'umount "$ROOT/project"' EXIT
    # shellcheck disable=SC2086
    in_root PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=/project NUMBA_CACHE_DIR=/tmp/numba-cache \
        ${ARM_ENV:-} bash -c 'cd /project && exec "$@"' run "$@"
}

if [ "${1:-}" = run ]; then
    shift
    run "$@"
else
    build
    in_root /opt/venv/bin/python -c 'import platform, numba; assert platform.machine() == "aarch64"; print("aarch64 numba", numba.__version__)'
fi
