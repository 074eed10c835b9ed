#!/usr/bin/env bash
# build.sh [--print-dir] [--rebuild]
#
# Builds the lab's guest kernel with CONFIG_IDLE_PAGE_TRACKING (Debian's own
# kernels lack it, so tierd's page_idle backend cannot run on them) from
# Debian's linux-source-6.12 package: x86_64_defconfig + kvm_guest.config +
# page_idle.config, everything built in (no initrd, no modules).
#
# The result lands in ${XDG_CACHE_HOME:-~/.cache}/tiering-pmem/kernels/HASH/
# (bzImage, modules.builtin, modules.builtin.modinfo, .config), HASH being
# taken over this script, the fragment and the source package version, and is
# reused while present. The last line on stdout is that directory.
#   --print-dir  print the directory of a finished build, exit 1 if none
#   --rebuild    build even when the cache holds a result (times ccache)
# LAB_KERNEL_NICE (default 19): the machine is shared, a kernel build should
# not starve other people's guests.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fragment=$here/page_idle.config
source_package=linux-source-6.12
source_tarball=/usr/src/$source_package.tar.xz
build_packages=("$source_package" flex bison libelf-dev cpio bc ccache xz-utils)
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/tiering-pmem
kernels=$cache_root/kernels
nice_level=${LAB_KERNEL_NICE:-19}

print_dir_only=0
rebuild=0
for arg in "$@"; do
    case $arg in
        --print-dir) print_dir_only=1 ;;
        --rebuild) rebuild=1 ;;
        *) echo "build.sh: unknown argument '$arg' (valid: --print-dir, --rebuild)" >&2; exit 2 ;;
    esac
done

log() { echo "kernel: $*" >&2; }

phase_start=0
phase() { phase_name=$1; phase_start=$(date +%s); log "phase $phase_name: start $(date -u +%H:%M:%S)"; }
phase_end() { log "phase $phase_name: $(( $(date +%s) - phase_start )) s"; }

missing_packages() {
    local pkg
    for pkg in "${build_packages[@]}"; do
        dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null | grep -q '^ii' || echo "$pkg"
    done
}

source_version() {
    dpkg-query -W -f='${Version}' "$source_package" 2>/dev/null || true
}

recipe_hash() {
    { cat "$here/build.sh" "$fragment"; echo "$source_package $(source_version)"; } \
        | sha256sum | cut -c1-16
}

# Fails unless every line of the fragment holds in the final .config.
check_fragment() {
    local config=$1 line name bad=0
    while IFS= read -r line; do
        if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)= ]]; then
            grep -qxF -- "$line" "$config" || { log "fragment line not in .config: '$line' (got: $(grep -E "^(# )?${BASH_REMATCH[1]}[= ]" "$config" || echo unset))"; bad=1; }
        elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
            name=${BASH_REMATCH[1]}
            if grep -q "^$name=" "$config"; then log "fragment wants $name unset, .config has: $(grep "^$name=" "$config")"; bad=1; fi
        fi
    done < "$fragment"
    return $bad
}

if [[ $print_dir_only == 1 ]]; then
    [[ -n $(source_version) ]] || { log "$source_package is not installed: run lab/kernel/build.sh first"; exit 1; }
    dir=$kernels/$(recipe_hash)
    [[ -f $dir/bzImage ]] || { log "no kernel built for this recipe in $dir: run lab/kernel/build.sh"; exit 1; }
    echo "$dir"
    exit 0
fi

missing=$(missing_packages)
if [[ -n $missing ]]; then
    if [[ $(id -u) != 0 ]]; then
        log "missing packages: $missing; install them with: sudo apt-get install --no-install-recommends $missing"
        exit 1
    fi
    phase apt
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2
    phase_end
fi

hash=$(recipe_hash)
dir=$kernels/$hash
mkdir -p "$kernels"
exec 9> "$kernels/.lock"
flock 9    # one build at a time; a second caller then finds the result

if [[ -f $dir/bzImage && $rebuild == 0 ]]; then
    log "cached: $dir ($(cat "$dir/kernelrelease" 2>/dev/null))"
    echo "$dir"
    exit 0
fi

# A fixed work path (not mktemp) so ccache, with CCACHE_BASEDIR, hits on rebuilds.
work=$kernels/.work
rm -rf "$work"
mkdir -p "$work"
total_start=$(date +%s)
log "building $source_package $(source_version) into $dir (recipe hash $hash, nice $nice_level)"

phase unpack
tar -xJf "$source_tarball" -C "$work"
phase_end
src=$work/$source_package
build_log=$work/build.log
export CCACHE_DIR=$cache_root/ccache CCACHE_BASEDIR=$work CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-2G}
export KBUILD_BUILD_USER=lab KBUILD_BUILD_HOST=tiering-pmem
kmake() {
    if ! nice -n "$nice_level" make -C "$src" O=build CC="ccache gcc" HOSTCC="ccache gcc" "$@" >> "$build_log" 2>&1; then
        log "make $* failed; last lines of $build_log:"
        tail -n 40 "$build_log" >&2
        exit 1
    fi
}

phase configure
kmake x86_64_defconfig kvm_guest.config
(cd "$src/build" && "$src/scripts/kconfig/merge_config.sh" -m .config "$fragment") >> "$build_log" 2>&1
kmake olddefconfig
check_fragment "$src/build/.config" || { log "the fragment does not hold in the final .config (see above)"; exit 1; }
phase_end

phase compile
kmake -j"$(nproc)" bzImage
phase_end

phase install
release=$(make -s -C "$src" O=build kernelrelease 2>/dev/null | tail -n 1)
stage=$(mktemp -d "$kernels/.stage-$hash.XXXXXX")
cp "$src/build/arch/x86/boot/bzImage" "$src/build/modules.builtin" \
   "$src/build/modules.builtin.modinfo" "$src/build/.config" "$stage/"
echo "$release" > "$stage/kernelrelease"
gzip -c "$build_log" > "$stage/build.log.gz"
chmod 755 "$stage"
if [[ -d $dir ]]; then rm -rf "$dir.old"; mv -T "$dir" "$dir.old"; fi
mv -T "$stage" "$dir"    # rename(2): readers see the whole result or none
rm -rf "$dir.old" "$work"
phase_end

log "built $release in $(( $(date +%s) - total_start )) s: $dir ($(du -sh "$dir/bzImage" | cut -f1) bzImage; ccache $(du -sh "$CCACHE_DIR" | cut -f1))"
echo "$dir"
