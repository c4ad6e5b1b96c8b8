#!/usr/bin/env bash
# Build the serving image (localhost/mnist-onnx-serve:latest) with podman on a machine that
# reaches Debian's mirrors and PyPI but no container registry:
#   1. a Debian bookworm root file system with python3 (mmdebstrap), imported as the base
#      image localhost/debian-python:bookworm; kept and reused once it exists;
#   2. the serving dependencies built or fetched as wheels on the host (pip wheel), into
#      build/wheels, kept between runs;
#   3. podman build of the Containerfile on that base, installing from those wheels only.
# With a registry at hand, `docker build -t mnist-onnx-serve .` does the same from
# python:3.11-slim and PyPI.
#
# Settings (environment): IMAGE, BASE_IMAGE, PYTHON (the host interpreter whose pip builds the
# wheels: CPython 3.11 on glibc, as the image's), PODMAN_FLAGS (podman's global options;
# the default is what this machine's kernel needs: runc, cgroupfs, vfs).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-localhost/mnist-onnx-serve:latest}"
BASE_IMAGE="${BASE_IMAGE:-localhost/debian-python:bookworm}"
WHEELS=build/wheels
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
read -r -a podman_flags <<<"${PODMAN_FLAGS:---runtime=runc --cgroup-manager=cgroupfs --storage-driver=vfs}"
podman=(podman "${podman_flags[@]}")
# The default ulimits (nproc 32768) cannot be set here; these can.
limits=(--ulimit nofile=1024:4096 --ulimit nproc=1024:4096)

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# `podman image exists` answers 0 (there), 1 (not there) or another code (podman failed).
base_found=0
"${podman[@]}" image exists "$BASE_IMAGE" || base_found=$?
if [ "$base_found" -eq 0 ]; then
    echo "base image $BASE_IMAGE: already there"
elif [ "$base_found" -ne 1 ]; then
    exit "$base_found"
else
    echo "base image $BASE_IMAGE: building with mmdebstrap"
    # Merged /usr set up by mmdebstrap's hook (not the usrmerge package, which would pull in
    # perl); no manual pages, documentation (copyright notices kept), translations or
    # glibc's iconv modules (Python's codecs are its own; glibc keeps UTF-8 built in).
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/lib/*/gconv/*' \
        bookworm "$scratch/rootfs.tar"
    "${podman[@]}" import "$scratch/rootfs.tar" "$BASE_IMAGE"
fi

echo "wheels: $WHEELS"
mkdir -p "$WHEELS"
# The project's install_requires with their dependencies, and the build backend the image
# needs to install the project itself with no index.
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --find-links "$WHEELS" \
    --wheel-dir "$WHEELS" "setuptools>=69" wheel .

echo "image $IMAGE: building"
"${podman[@]}" build "${limits[@]}" --network=host \
    --build-arg BASE="$BASE_IMAGE" --build-arg WHEELS="$WHEELS" \
    --file Containerfile --tag "$IMAGE" .

size="$("${podman[@]}" image inspect --format '{{.Size}}' "$IMAGE")"
echo "image $IMAGE: $((size / 1000000)) MB"
