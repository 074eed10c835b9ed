#!/usr/bin/env bash
# Builds intel/memtierd (memtierd and meme) from a mirrored git directory with Debian's Go packages
# only: GOPROXY is off, and a side modfile replaces the two dependencies with Debian's sources under
# /usr/share/gocode/src, so nothing is downloaded but Debian packages. The binaries go to the cache
# (never into the repo), where bench/peers/run.sh looks for them.
#   bench/peers/build_memtierd.sh [MIRROR_GIT_DIR] [COMMIT]
# MIRROR_GIT_DIR defaults to $MEMTIERD_GIT_DIR or /work/.mirror/intel+memtierd/repo; COMMIT to HEAD.
# Prints the binary's path and the build's seconds; the last line is "memtierd: PATH".
# MEMTIERD_CLEAN=1 empties the Go build cache first (a cold build, as timed in the README).
set -euo pipefail
GIT_DIR_SRC=${1:-${MEMTIERD_GIT_DIR:-/work/.mirror/intel+memtierd/repo}}
COMMIT=${2:-HEAD}
OUT=${XDG_CACHE_HOME:-$HOME/.cache}/tiering-pmem/memtierd
GO=/usr/lib/go-1.23/bin/go
GOCODE=/usr/share/gocode/src

if ! git --git-dir="$GIT_DIR_SRC" rev-parse --verify -q "$COMMIT^{commit}" >/dev/null 2>&1; then
    cat >&2 <<MSG
build_memtierd: no memtierd git directory at $GIT_DIR_SRC (or no commit $COMMIT there).
Bring the source in with the session search tool's fetch of github:intel/memtierd (it prints the
git directory, /work/.mirror/intel+memtierd/repo) and pass that path as the first argument.
bench/peers runs without memtierd: peer (f) is then reported as skipped.
MSG
    exit 2
fi

revision=$(git --git-dir="$GIT_DIR_SRC" rev-parse "$COMMIT")
if [ "${MEMTIERD_CLEAN:-0}" != 1 ] && [ -x "$OUT/memtierd" ] && [ "$(cat "$OUT/REVISION" 2>/dev/null)" = "$revision" ]; then
    echo "memtierd $revision already built (MEMTIERD_CLEAN=1 rebuilds)"
    echo "memtierd: $OUT/memtierd"
    exit 0
fi

# go.mod asks for go 1.22, x/sys and yaml.v3: Go 1.23 and x/sys 0.22 come from bookworm-backports
# (go.mod asks for x/sys v0.8.0; bookworm's own is 0.3.0), yaml.v3 3.0.1 from bookworm.
missing=""
for package in golang-1.23-go golang-golang-x-sys-dev golang-gopkg-yaml.v3-dev; do
    dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done
if [ -n "$missing" ]; then
    if ! apt-cache policy golang-1.23-go | grep -q backports; then
        cat >&2 <<MSG
build_memtierd: needs$missing; golang-1.23-go and x/sys 0.22 are in bookworm-backports, which apt
does not list. As root, add it and rerun:
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > /etc/apt/sources.list.d/bookworm-backports.sources
  apt-get update
MSG
        exit 2
    fi
    # shellcheck disable=SC2086  # the list is meant to split into package names
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports $missing >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/memtierd-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
git --git-dir="$GIT_DIR_SRC" archive "$revision" | tar -x -C "$work"

# The side modfile: the module's own go.mod untouched, the dependencies pointed at Debian's copies.
cp "$work/go.mod" "$work/debian.mod"
cat >>"$work/debian.mod" <<MOD

replace golang.org/x/sys => $GOCODE/golang.org/x/sys
replace gopkg.in/yaml.v3 => $GOCODE/gopkg.in/yaml.v3
MOD
: >"$work/debian.sum"

[ "${MEMTIERD_CLEAN:-0}" = 1 ] && rm -rf "$OUT/.gocache"
start=$(date +%s.%N)
mkdir -p "$OUT"
version="0.0.0-g${revision:0:12}"
(
    cd "$work"
    export GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local GOPATH="$work/gopath" GOCACHE="$OUT/.gocache"
    for binary in memtierd meme; do
        # Linked statically (memtierd's own STATIC=1 flags; its move_pages and process_madvise calls
        # need cgo), so the host's glibc (bookworm) never has to match the guest's (trixie).
        "$GO" build -modfile=debian.mod -trimpath -tags osusergo,netgo \
            -ldflags "-extldflags=-static -X=github.com/intel/memtierd/pkg/version.Version=$version -X=github.com/intel/memtierd/pkg/version.Build=${revision:0:12}" \
            -o "$OUT/$binary" "./cmd/$binary"
    done
)
end=$(date +%s.%N)
echo "$revision" >"$OUT/REVISION"
seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
echo "built memtierd $version (revision $revision) in $seconds s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "memtierd: $OUT/memtierd"
