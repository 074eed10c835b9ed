#!/usr/bin/env bash
# Check that each role's argument specs match its defaults, then run ansible-lint with the
# production profile (.ansible-lint) over the collection.
# Usage: tests/lint/run.sh [PATH...]   (default: the whole repository)
# Environment: VENV (default .venv).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-$repo/.venv}
case $venv in /*) ;; *) venv=$repo/$venv ;; esac
if [[ ! -x $venv/bin/ansible-lint ]]; then
  echo "lint: no ansible-lint in $venv (run 'make venv' first, or set VENV)" >&2
  exit 2
fi
cd "$repo"
# ansible-lint resolves tiering.pmem.* through the same collections path the playbooks use.
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$repo/.cache/collections}
if [[ ! -e $ANSIBLE_COLLECTIONS_PATH/ansible_collections/tiering/pmem ]]; then
  mkdir -p "$ANSIBLE_COLLECTIONS_PATH/ansible_collections/tiering"
  ln -sfn "$repo" "$ANSIBLE_COLLECTIONS_PATH/ansible_collections/tiering/pmem"
fi
# ansible-core checks argument specs against what a play passes, never against the role's defaults.
"$venv/bin/python" "$repo/tests/lint/check_argument_specs.py"
# playbooks/awx/configure.yml uses awx.awx; without it the syntax check cannot resolve its modules.
VENV=$venv "$repo/tests/awx/get-awx-collection.sh" "$ANSIBLE_COLLECTIONS_PATH"
PATH=$venv/bin:$PATH exec ansible-lint --offline --profile production --nocolor "$@"
