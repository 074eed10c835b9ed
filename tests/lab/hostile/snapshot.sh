#!/bin/sh
# snapshot.sh: the host state that a refused (hostile) input must leave untouched, printed in a
# stable, sorted form so that two snapshots can be compared with diff. Runs in the guest as root.
#   sh snapshot.sh > before.txt; ...; sh snapshot.sh > after.txt; diff before.txt after.txt
# Covers: ndctl list -RNDi, daxctl list, every memory block's state and valid_zones,
# auto_online_blocks, /proc/cmdline, GRUB defaults and grub.cfg, the tiering knobs, sysctl.d,
# tmpfiles.d, daxctl.conf.d, /etc/tiering-pmem, /etc/tierd, and the files and units of ours
# (tiering-pmem-dax-kmem@, tierd).
set -u
export LC_ALL=C

section() { printf '=== %s\n' "$1"; }

# One path: symlink target, or mode/owner/size and content (a digest for files over 64 KiB, binary
# files such as __pycache__/*.pyc, and text that is not UTF-8: the output must stay UTF-8 text).
show_path() {
    if [ -L "$1" ]; then
        printf -- '--- %s -> %s\n' "$1" "$(readlink "$1")"
    elif [ -f "$1" ]; then
        printf -- '--- %s %s\n' "$1" "$(stat -c '%a %U:%G %s' "$1")"
        if [ "$(stat -c %s "$1")" -gt 65536 ] || { [ -s "$1" ] && ! grep -qI . "$1"; } \
                || ! iconv -f UTF-8 -t UTF-8 "$1" >/dev/null 2>&1; then
            sha256sum "$1"
        else
            cat "$1"
            echo
        fi
    elif [ -d "$1" ]; then
        printf -- '--- %s/ %s\n' "$1" "$(stat -c '%a %U:%G' "$1")"
    elif [ -e "$1" ]; then
        printf -- '--- %s %s\n' "$1" "$(stat -c '%F %a' "$1")"
    else
        printf -- '--- %s absent\n' "$1"
    fi
}

# Every path under a directory (the directory itself included), sorted.
show_tree() {
    if [ -e "$1" ] || [ -L "$1" ]; then
        find "$1" | sort | while IFS= read -r path; do show_path "$path"; done
    else
        printf -- '--- %s absent\n' "$1"
    fi
}

# Every path under a directory, files by digest only (an installed package: its content is not news).
show_digests() {
    if [ -e "$1" ]; then
        find "$1" | sort | while IFS= read -r path; do
            if [ -f "$path" ] && [ ! -L "$path" ]; then sha256sum "$path"; else show_path "$path"; fi
        done
    else
        printf -- '--- %s absent\n' "$1"
    fi
}

knob() {
    if [ -e "$1" ]; then printf '%s = %s\n' "$1" "$(cat "$1")"; else printf '%s absent\n' "$1"; fi
}

section "ndctl list -RNDi"
ndctl list -RNDi 2>&1
section "daxctl list"
daxctl list 2>&1

section "memory blocks (state, valid_zones)"
for dir in /sys/devices/system/memory/memory*; do
    printf '%s %s %s\n' "${dir##*/}" "$(cat "$dir/state" 2>&1)" "$(cat "$dir/valid_zones" 2>&1)"
done | sort -V
knob /sys/devices/system/memory/auto_online_blocks

section "kernel command line"
cat /proc/cmdline

section "boot loader"
show_path /etc/default/grub
show_tree /etc/default/grub.d
show_path /boot/grub/grub.cfg

section "tiering knobs"
knob /proc/sys/kernel/numa_balancing
knob /proc/sys/kernel/numa_balancing_promote_rate_limit_MBps
knob /sys/kernel/mm/numa/demotion_enabled

section "configuration"
show_tree /etc/sysctl.d
show_tree /etc/tmpfiles.d
show_tree /etc/daxctl.conf.d
show_tree /etc/tiering-pmem
show_tree /etc/tierd

section "files and units of ours"
find /etc/systemd/system \( -name 'tiering-pmem*' -o -name 'tierd*' \) 2>/dev/null | sort |
    while IFS= read -r path; do show_path "$path"; done
show_path /usr/local/sbin/tiering-pmem-dax-kmem
show_path /usr/local/sbin/tierd
show_digests /usr/local/lib/tierd
printf 'tierd.service: %s %s\n' "$(systemctl is-enabled tierd.service 2>&1)" "$(systemctl is-active tierd.service 2>&1)"
systemctl list-units --all --no-legend --plain 'tiering-pmem*' 'tierd*' 2>&1 | awk '{print $1, $2, $3, $4}' | sort
