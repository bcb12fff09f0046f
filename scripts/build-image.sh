#!/usr/bin/env bash
# Builds the Dockerfile with podman where Docker can't run and no registry but PyPI and Debian
# is reachable (CI, the development machines). The base image `python:3.12-slim` can't be
# pulled there, so this first makes an offline stand-in for it, once per recipe: a minimal
# Debian bookworm (debootstrap) with Debian's Python 3.11, pip and venv, imported under the
# name python:3.12-slim. The stand-in is for testing the Dockerfile, not for shipping: real
# builds use `docker build` against the real base (docs/docker.md).
#
# Usage: bash scripts/build-image.sh [--tag NAME] [--stand-in-only] [podman build args...]
# Prints how long each step took and the image size. Needs root, podman, buildah (for the
# tests) and debootstrap: `bash scripts/test.sh` installs them.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="localhost/zego-exporter:dev"
stand_in_only=false
build_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --stand-in-only) stand_in_only=true; shift ;;
    *) build_args+=("$1"); shift ;;
  esac
done

# vfs: no overlay mounts, which these sandboxes refuse. Every tool that reads the images
# (buildah in the tests) must use the same driver.
podman=(podman --storage-driver vfs)
base="docker.io/library/python:3.12-slim"
mirror="${ZEGO_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# pip's configuration here, as pip itself reports it: `pip config debug` lists the files it
# reads (those that exist are copied into the stand-in at the same paths) and the PIP_*
# variables (set in the stand-in's environment). Local directories that it names as
# find-links or file:// indexes (several GB of wheels) are bind-mounted into the build
# instead of copied: with vfs every layer is a full copy of the image.
pip_files() {
  python3 -m pip config debug 2>/dev/null \
    | sed -n 's/^  \(\/[^,]*\), exists: True$/\1/p'
}
pip_directories() {
  # find-links directories, and the root of each file:// index (its pages link to ../../files/).
  python3 -m pip config list 2>/dev/null \
    | sed -n "s/^[^=]*\.\(find-links\|index-url\|extra-index-url\)='\(.*\)'$/\2/p" \
    | tr ' ' '\n' \
    | while read -r location; do
        path="${location#file://}"
        [ -d "$path" ] || continue
        case "$location" in file://*) dirname "$path" ;; *) echo "$path" ;; esac
      done | sort -u
}

root=""
trap '[ -z "$root" ] || rm -rf "$root" "$root.log"' EXIT

build_stand_in() {
  local started python_version
  root="$(mktemp -d /var/tmp/zego-stand-in.XXXXXX)"
  echo "== debootstrap: bookworm minbase with python3, pip, venv from $mirror"
  started=$SECONDS
  debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    bookworm "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -40 "$root.log" >&2; echo "debootstrap failed (its log above)" >&2; return 1; }
  echo "== debootstrap took $((SECONDS - started)) s"
  python_version="$(chroot "$root" python3 --version)"

  # What python:3.12-slim offers that the Dockerfile relies on: pip without Debian's
  # "externally managed" refusal, and python / pip on PATH under /usr/local/bin.
  rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
  for name in python python3; do ln -sf /usr/bin/python3 "$root/usr/local/bin/$name"; done
  for name in pip pip3; do ln -sf /usr/bin/pip3 "$root/usr/local/bin/$name"; done
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  chmod 0755 "$root"  # mktemp made it 0700: the image's / would shut out uid 65534

  # The machine's CA bundle (it may hold a proxy's CA that Debian's bundle lacks) and pip's
  # configuration, so that pip inside the build reaches the same package sources as here.
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  local file changes=()
  while read -r file; do
    mkdir -p "$root$(dirname "$file")" && cp "$file" "$root$file"
  done < <(pip_files)
  [ -d /etc/xdg/pip ] && mkdir -p "$root/etc/xdg" && cp -r /etc/xdg/pip "$root/etc/xdg/"
  local name value
  while IFS='=' read -r name value; do
    changes+=(--change "ENV $name=\"$value\"")
  done < <(env | grep '^PIP_' | sort || true)

  # The previous stand-in and its recipe tags go: images are large on vfs.
  "${podman[@]}" rmi --force "$base" \
    $("${podman[@]}" images --format '{{.Repository}}:{{.Tag}}' "${recipe%:*}") \
    >/dev/null 2>&1 || true
  tar -C "$root" -c . | "${podman[@]}" import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    "${changes[@]}" \
    --change 'CMD ["python3"]' \
    - "$base" >/dev/null
  "${podman[@]}" tag "$base" "$recipe"
  echo "== stand-in $base imported: Debian bookworm, $python_version"
}

# Built once and reused, until its recipe (the function above, the mirror) changes: a second
# tag on the stand-in names the recipe it was built from.
recipe="localhost/zego-exporter-stand-in:$({ declare -f build_stand_in; echo "$mirror"; } \
  | sha256sum | cut -c1-12)"
image_id() { "${podman[@]}" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
if [ -n "$(image_id "$recipe")" ] && [ "$(image_id "$recipe")" = "$(image_id "$base")" ]; then
  echo "== stand-in $base: already built from this recipe ($recipe)"
else
  build_stand_in
fi
$stand_in_only && exit 0

volumes=()
while read -r directory; do
  volumes+=(--volume "$directory:$directory:ro")
done < <(pip_directories)

version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' zego_exporter/__init__.py)"
echo "== podman build $tag (VERSION=$version)"
started=$SECONDS
"${podman[@]}" build --isolation chroot --format docker --network host --pull=never \
  "${volumes[@]}" --build-arg VERSION="$version" --tag "$tag" "${build_args[@]}" .
echo "== build took $((SECONDS - started)) s"
size="$("${podman[@]}" image inspect --format '{{.Size}}' "$tag")"
echo "== image $tag: $((size / 1000000)) MB"
