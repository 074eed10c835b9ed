#!/usr/bin/env bash
# Build one lab guest image from Debian's packages, with no loop mounts.
#
#   build.sh RELEASE OUTDIR AUTHORIZED_KEY_FILE [SIZE]
#
# Writes into OUTDIR:
#   rootfs.img      whole-disk ext4 (booted with -kernel/-initrd, root=/dev/vda)
#   disk-grub.img   MBR disk: GRUB in the MBR gap, the same ext4 as partition 1
#                   (booted by GRUB itself, so kernel command-line edits inside the guest are real)
#   vmlinuz, initrd.img, manifest.env
# The hooks below are single-quoted on purpose: mmdebstrap runs them with the chroot as "$1".
# shellcheck disable=SC2016
set -euo pipefail

release=$1
out=$2
authorized_key=$3
size=${4:-3G}
here=$(cd "$(dirname "$0")" && pwd)
# A fixed filesystem UUID lets the starter grub.cfg find the root without grub-probe.
fs_uuid=6b1f0c1e-7a1d-4c6e-9a55-1ab5e0000001

tmp=$(mktemp -d "${out}.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root="$tmp/root"

packages=$(grep -v '^#' "$here/packages.txt" | grep -v '^$' | paste -sd, -)

t0=$(date +%s)
# grub-pc must never run grub-install in the build chroot: it would probe the host's disks.
mmdebstrap --mode=root --variant=minbase --include="$packages" \
  --essential-hook='printf "%s\n" "grub-pc grub-pc/install_devices multiselect" "grub-pc grub-pc/install_devices_empty boolean true" | chroot "$1" debconf-set-selections' \
  --customize-hook="cp -a '$here/overlay/.' \"\$1/\"" \
  --customize-hook='chroot "$1" ssh-keygen -A' \
  --customize-hook='chroot "$1" systemctl enable serial-getty@ttyS0.service lab-grub-firstboot.service systemd-networkd.service' \
  --customize-hook='echo lab > "$1/etc/hostname"; printf "127.0.0.1 localhost\n127.0.1.1 lab\n" > "$1/etc/hosts"' \
  --customize-hook="printf 'UUID=$fs_uuid / ext4 defaults,errors=remount-ro 0 1\n' > \"\$1/etc/fstab\"" \
  --customize-hook="install -d -m 700 \"\$1/root/.ssh\" && install -m 600 '$authorized_key' \"\$1/root/.ssh/authorized_keys\"" \
  --customize-hook='mkdir -p "$1/boot/grub" && chroot "$1" grub-mkimage -O i386-pc -p "(hd0,msdos1)/boot/grub" -o /boot/grub/core.img biosdisk part_msdos ext2 normal linux configfile search search_fs_uuid serial terminal terminfo test echo gzio all_video' \
  --customize-hook='cp -a "$1/usr/lib/grub/i386-pc" "$1/boot/grub/i386-pc"' \
  --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*_Packages' \
  "$release" "$root" >"$tmp/mmdebstrap.log" 2>&1 || { tail -40 "$tmp/mmdebstrap.log" >&2; exit 1; }
echo "phase mmdebstrap $release: $(( $(date +%s) - t0 )) s"

kver=$(cd "$root/boot" && printf '%s\n' vmlinuz-* | sed 's/^vmlinuz-//' | sort -V | tail -1)
cat > "$root/boot/grub/grub.cfg" <<EOF
# Starter config: replaced by update-grub on the first boot through GRUB.
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=1
search --no-floppy --fs-uuid --set=root $fs_uuid
menuentry "Debian $release ($kver)" {
  linux /boot/vmlinuz-$kver root=UUID=$fs_uuid ro console=ttyS0,115200 net.ifnames=0 oops=panic panic=5
  initrd /boot/initrd.img-$kver
}
EOF
mkdir -p "$tmp/out"
cp "$root/boot/vmlinuz-$kver" "$tmp/out/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$tmp/out/initrd.img"
cp "$root/usr/lib/grub/i386-pc/boot.img" "$tmp/boot.img"
cp "$root/boot/grub/core.img" "$tmp/core.img"

t0=$(date +%s)
mkfs.ext4 -q -F -L root -U "$fs_uuid" -d "$root" "$tmp/out/rootfs.img" "$size"
echo "phase mkfs $release: $(( $(date +%s) - t0 )) s"

# GRUB disk: partition 1 at 1 MiB holds the same filesystem; boot.img code (440 bytes, keeping
# the partition table) in the MBR; core.img from sector 1, where boot.img looks by default.
t0=$(date +%s)
disk="$tmp/out/disk-grub.img"
fs_bytes=$(stat -c %s "$tmp/out/rootfs.img")
truncate -s $(( fs_bytes + 1048576 )) "$disk"
echo 'start=2048, type=83, bootable' | sfdisk -q "$disk"
core_sectors=$(( ( $(stat -c %s "$tmp/core.img") + 511 ) / 512 ))
[ "$core_sectors" -lt 2047 ] || { echo "core.img too large: $core_sectors sectors" >&2; exit 1; }
dd if="$tmp/boot.img" of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$tmp/core.img" of="$disk" bs=512 seek=1 conv=notrunc status=none
dd if="$tmp/out/rootfs.img" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
echo "phase grub-disk $release: $(( $(date +%s) - t0 )) s"

cat > "$tmp/out/manifest.env" <<EOF
RELEASE=$release
KERNEL_VERSION=$kver
FS_UUID=$fs_uuid
BUILT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
rm -rf "$out"
mv "$tmp/out" "$out"
