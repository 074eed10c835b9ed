#!/usr/bin/env bash
# timed.sh PHASE COMMAND... : run COMMAND and print how long the phase took (CI reads these lines).
# Every line of the command's output gets the wall-clock time in front, so a slow step shows in the log.
set -o pipefail
phase=$1; shift
start=$(date +%s)
echo "=== phase $phase: start $(date -u +%H:%M:%S)"
if [[ -n ${TIMED_STAMPING:-} ]]; then    # an outer phase already stamps the lines
    "$@"
else
    TIMED_STAMPING=1 "$@" 2>&1 | while IFS= read -r line; do printf '%(%H:%M:%S)T %s\n' -1 "$line"; done
fi
rc=$?
echo "=== phase $phase: $(( $(date +%s) - start )) s (exit $rc)"
exit $rc
