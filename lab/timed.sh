#!/usr/bin/env bash
# timed.sh PHASE COMMAND... : run COMMAND and print how long the phase took (CI reads these lines).
phase=$1; shift
start=$(date +%s)
echo "=== phase $phase: start $(date -u +%H:%M:%S)"
"$@"
rc=$?
echo "=== phase $phase: $(( $(date +%s) - start )) s (exit $rc)"
exit $rc
