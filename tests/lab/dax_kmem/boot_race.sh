#!/usr/bin/env bash
# The dax_kmem boot script against the boot-time race it must survive, in a trixie legacy guest.
#   tests/lab/dax_kmem/boot_race.sh [TRIALS_PER_DELAY (default 3)]      (make test-boot-race)
# At boot a dax device appears before udev has loaded and bound device_dax; reconfiguring it during
# that bind fails with EBUSY ("daxctl_dev_disable: failed to disable"), which left a CI guest in
# devdax after a reboot. Each trial unloads device_dax (dax0.0 without a driver, as at boot), starts
# the boot script and loads device_dax DELAY s later, as udev would. Every trial must end system-ram.
# The script's previous version failed 3 of 15 such trials at delays of 0.05-0.15 s.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
NAME=${BOOT_RACE_NAME:-t-boot-race}
TRIALS=${1:-3}
LAB="python3 $REPO/lab/labctl.py"
trap '$LAB down "$NAME" >/dev/null 2>&1 || true' EXIT
$LAB up "$NAME" --release trixie --flavour legacy >/dev/null
python3 -c 'import re, sys; print(re.search(r"SCRIPT_TEXT = r\"\"\"(.*?)\"\"\"", open(sys.argv[1]).read(), re.S).group(1), end="")' \
    "$REPO/plugins/module_utils/_pmem_persist.py" | $LAB ssh "$NAME" 'cat > /root/boot-script.sh'
$LAB ssh "$NAME" "TRIALS=$TRIALS sh -s" <<'GUEST'
set -eu
ndctl create-namespace -fe namespace0.0 -m devdax >/dev/null
udevadm settle --timeout=60
mkdir -p /etc/tiering-pmem/dax-kmem
printf 'ONLINE=1\nMOVABLE=0\n' > /etc/tiering-pmem/dax-kmem/dax0.0.conf
mode() { daxctl list -d dax0.0 | sed -n 's/.*"mode":"\([^"]*\)".*/\1/p'; }
# Right after boot or a reconfigure, udev may still hold device_dax ("Module device_dax is in use").
unload_device_dax() {
    tries=0
    until modprobe -r device_dax 2>/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -ge 40 ]; then
            modprobe -r device_dax
            return 1
        fi
        udevadm settle --timeout=10 || true
        sleep 0.5
    done
}
failed=0
for delay in 0 0.05 0.08 0.1 0.12 0.15 0.3; do
    trial=1
    while [ "$trial" -le "$TRIALS" ]; do
        if [ "$(mode)" = system-ram ]; then
            daxctl offline-memory dax0.0 >/dev/null 2>&1
            daxctl reconfigure-device -m devdax -f dax0.0 >/dev/null 2>&1
        fi
        unload_device_dax
        (sleep "$delay"; modprobe device_dax) &
        rc=0
        out=$(sh /root/boot-script.sh dax0.0 2>&1) || rc=$?
        wait
        echo "delay $delay s trial $trial: rc $rc, mode $(mode)"
        if [ "$rc" -ne 0 ] || [ "$(mode)" != system-ram ]; then
            echo "$out" | tail -5
            failed=$((failed + 1))
        fi
        trial=$((trial + 1))
    done
done
[ "$failed" -eq 0 ] || { echo "FAIL: $failed trial(s) did not end system-ram"; exit 1; }
echo "boot race: every trial ended system-ram"
GUEST
