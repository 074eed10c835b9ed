#!/usr/bin/env bash
# make cxl-lab: boot the cxl lab guest (QEMU 10 from its cached chroot), run cxl_region.yml against it,
# always stop it (CXL_LAB_KEEP=1 keeps it). Exit status: the playbook's.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
NAME=${CXL_LAB_NAME:-cxl-lab}
VENV=${VENV:-$REPO/.venv}
case $VENV in /*) ;; *) VENV=$REPO/$VENV ;; esac
lab() { python3 "$REPO/lab/labctl.py" "$@"; }
trap '[[ ${CXL_LAB_KEEP:-0} == 1 ]] || lab down "$NAME" >/dev/null' EXIT
lab list 2>/dev/null | grep -q "^$NAME .*running" || lab up "$NAME" --flavour cxl >/dev/null
inventory=$(mktemp "${TMPDIR:-/tmp}/cxl-lab.XXXXXX.json")
lab inventory "$NAME" > "$inventory"
"$VENV/bin/ansible-playbook" -i "$inventory" "$REPO/tests/lab/cxl/cxl_region.yml"
