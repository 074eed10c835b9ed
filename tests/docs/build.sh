#!/usr/bin/env bash
# Render the collection's documentation with antsibull-docs and Sphinx; fail on any warning.
#   tests/docs/build.sh        -> HTML in .cache/docs/html (index.html), RST in .cache/docs/rst
# Sources: docs/conf.py, docs/index.rst, docs/antsibull-docs.cfg; the plugin and role pages are
# generated from the DOCUMENTATION of plugins/* and roles/*/meta/argument_specs.yml each time.
# Environment: VENV (default .venv; needs requirements-docs.txt installed).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-$repo/.venv}
case $venv in /*) ;; *) venv=$repo/$venv ;; esac
for tool in antsibull-docs sphinx-build; do
  if [[ ! -x $venv/bin/$tool ]]; then
    echo "docs: no $tool in $venv (pip install -r requirements-docs.txt)" >&2
    exit 2
  fi
done
export PATH=$venv/bin:$PATH
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$repo/.cache/collections}
if [[ ! -e $ANSIBLE_COLLECTIONS_PATH/ansible_collections/tiering/pmem ]]; then
  mkdir -p "$ANSIBLE_COLLECTIONS_PATH/ansible_collections/tiering"
  ln -sfn "$repo" "$ANSIBLE_COLLECTIONS_PATH/ansible_collections/tiering/pmem"
fi

out=$repo/.cache/docs
rm -rf "$out"
mkdir -p "$out/rst"
chmod og-w "$out/rst"  # antsibull-docs refuses a destination others can write to
cp "$repo/docs/index.rst" "$repo/docs/ansible_references.rst" "$out/rst/"
log=$out/build.log

# antsibull-docs reports problems in plugin docs as warnings on stderr and still exits 0.
antsibull-docs --config-file "$repo/docs/antsibull-docs.cfg" collection --use-current \
  --dest-dir "$out/rst" tiering.pmem 2>&1 | tee "$log"
if grep -Ei 'warn|error' "$log" >/dev/null; then
  echo "docs: antsibull-docs reported problems (above)" >&2
  exit 1
fi
sphinx-build -M html "$out/rst" "$out" -q -c "$repo/docs" -W --keep-going

# antsibull-docs leaves out, without a word, what ansible-doc cannot load (e.g. a role whose
# meta/argument_specs.yml is not valid YAML): every plugin and role must have its page.
missing=()
pages=$out/html/collections/tiering/pmem
for path in "$repo"/plugins/modules/*.py "$repo"/plugins/filter/*.py "$repo"/roles/*/; do
  name=$(basename "$path" .py)
  case $path in
    */__init__.py) continue ;;
    */plugins/modules/*) page=${name}_module.html ;;
    */plugins/filter/*) page=${name}_filter.html ;;
    */roles/*) page=${name}_role.html ;;
  esac
  [[ -f $pages/$page ]] || missing+=("${path#"$repo"/} (no $page)")
done
if ((${#missing[@]})); then
  printf 'docs: not documented: %s\n' "${missing[@]}" >&2
  exit 1
fi
echo "docs: $out/html/index.html"
