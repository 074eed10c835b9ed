#!/usr/bin/env bash
# Run `ansible-test sanity` on this collection.
#
# ansible-test only works from inside an `ansible_collections/<namespace>/<name>` tree, so the
# working tree (git-tracked plus untracked-but-not-ignored files, i.e. what a commit would
# contain, including uncommitted edits) is copied into a temporary one.
#
# Usage: tests/sanity/run.sh [FILE...] [-- EXTRA ansible-test ARGS]
#   With FILEs (paths relative to the repository root) only those files are checked.
#   Environment: VENV (default .venv), SANITY_KEEP=1 keeps the temporary tree.
#
# Each sanity test that needs extra Python packages (pylint, yamllint, voluptuous, ...) runs in
# a virtual environment that ansible-test creates with `--venv` and fills from PyPI with the
# versions it pins; they are cached under ~/.ansible/test/venv, so only the first run pays.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-$repo/.venv}
case $venv in /*) ;; *) venv=$repo/$venv ;; esac
python=$venv/bin/python
if [[ ! -x $python ]]; then
  echo "sanity: no Python at $python (run 'make venv' first, or set VENV)" >&2
  exit 2
fi

files=()
extra=()
while (($#)); do
  case $1 in
    --) shift; extra=("$@"); break ;;
    *) files+=("$1"); shift ;;
  esac
done

namespace=$(sed -n 's/^namespace: *//p' "$repo/galaxy.yml")
name=$(sed -n 's/^name: *//p' "$repo/galaxy.yml")
work=$(mktemp -d "${TMPDIR:-/tmp}/sanity.XXXXXX")
if [[ ${SANITY_KEEP:-0} != 1 ]]; then
  trap 'rm -rf "$work"' EXIT
fi
dest=$work/ansible_collections/$namespace/$name
mkdir -p "$dest"

# Tracked files that were deleted in the working tree are listed by `git ls-files -c` too.
(cd "$repo" && git ls-files -z -c -o --exclude-standard) |
  (cd "$repo" && while IFS= read -r -d '' f; do [[ -e $f || -L $f ]] && printf '%s\0' "$f"; done) |
  (cd "$repo" && tar --null -T - -cf -) | (cd "$dest" && tar -xf -)

# ansible-test lists a collection's files through git when it sits in a repository; a fresh
# one holding exactly the copied files keeps that listing identical to the copy.
git -C "$dest" init -q
git -C "$dest" add -A
git -C "$dest" -c user.name=sanity -c user.email=sanity@localhost commit -q -m sanity --no-verify

for f in "${files[@]}"; do
  if [[ ! -e $dest/$f ]]; then
    echo "sanity: '$f' is not a file of the collection (give paths relative to $repo)" >&2
    exit 2
  fi
done

# ansible-test bootstraps pip into its sanity venvs with a script from a host that is not
# reachable here; seed its cache with an equivalent (see get_pip.py) unless one is there.
pip_version=$("$python" -c 'from ansible_test._internal.python_requirements import get_venv_packages as g
class P: version = None
print(g(P())["pip"])')
get_pip_cache=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [[ ! -s $get_pip_cache ]]; then
  mkdir -p "$(dirname "$get_pip_cache")"
  cp "$repo/tests/sanity/get_pip.py" "$get_pip_cache"
fi

pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
cd "$dest"
echo "sanity: ansible-test sanity in $dest (Python $pyver)" >&2
PATH=$venv/bin:$PATH "$venv/bin/ansible-test" sanity --color no --requirements --python "$pyver" \
  ${extra[@]+"${extra[@]}"} ${files[@]+"${files[@]}"}
