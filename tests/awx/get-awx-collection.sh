#!/usr/bin/env bash
# Put the awx.awx collection (needed to lint and check playbooks/awx/configure.yml) into the
# tree's collections path, .cache/collections. Galaxy is not reachable from these machines; the
# `ansible` package on PyPI bundles awx.awx, so its wheel is fetched with pip (no install) and
# only ansible_collections/awx/awx is unpacked. Does nothing when the pinned version is there.
# Usage: tests/awx/get-awx-collection.sh [COLLECTIONS_PATH]   Environment: VENV (default .venv)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-$repo/.venv}
case $venv in /*) ;; *) venv=$repo/$venv ;; esac
dest=${1:-$repo/.cache/collections}
# ansible 12.3.0 bundles awx.awx 24.6.1.
ansible_wheel_version=12.3.0
awx_version=24.6.1

manifest=$dest/ansible_collections/awx/awx/MANIFEST.json
if [[ -f $manifest ]] && grep -q "\"version\": \"$awx_version\"" "$manifest"; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$venv/bin/pip" download --quiet --no-deps --only-binary :all: -d "$work" "ansible==$ansible_wheel_version" \
  2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
"$venv/bin/python" - "$work"/ansible-*.whl "$dest" "$awx_version" <<'PY'
import json, os, shutil, sys, zipfile
wheel, dest, version = sys.argv[1:4]
prefix = "ansible_collections/awx/awx/"
target = os.path.join(dest, prefix)
shutil.rmtree(target, ignore_errors=True)
with zipfile.ZipFile(wheel) as whl:
    members = [m for m in whl.namelist() if m.startswith(prefix)]
    if not members:
        sys.exit("%s holds no %s" % (wheel, prefix))
    for member in members:
        whl.extract(member, dest)
with open(os.path.join(target, "MANIFEST.json")) as handle:
    found = json.load(handle)["collection_info"]["version"]
if found != version:
    sys.exit("%s bundles awx.awx %s, expected %s" % (wheel, found, version))
print("awx.awx %s -> %s" % (found, target))
PY
