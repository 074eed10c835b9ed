#!/usr/bin/env bash
# molecule_test.sh SCENARIO : `molecule test -s SCENARIO` (make molecule-SCENARIO), plus what molecule
# leaves undone when it crashes.
# Molecule runs `ansible-playbook --version` before every step and raises when that exits non-zero
# ("ansible-playbook is not available"). In two clean-clone runs of make test (2026-12-02, 03:49 and
# 06:03 UTC) that check failed once each, in molecule-legacy, at its destroy and at its converge step,
# though the playbooks of the steps before had just run. Molecule then exits with a traceback and
# without its destroy step, and the guest it leaves running holds one of the lab's two slots, so the
# lane's next scenario waits for it. So: after any failed run, `molecule destroy` (no guest outlives
# a scenario); when the failure was that check, print what `ansible-playbook --version` itself says
# (the cause is not known yet) and test the scenario once more, saying so. Any other failure stands.
set -uo pipefail
scenario=${1:?usage: molecule_test.sh SCENARIO}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for attempt in 1 2; do
    molecule test -s "$scenario" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] && exit 0
    echo "molecule_test.sh: molecule test -s $scenario failed (rc $rc, attempt $attempt); destroying its guests"
    molecule destroy -s "$scenario" >/dev/null 2>&1 || echo "molecule_test.sh: molecule destroy -s $scenario failed too"
    if [ "$attempt" = 1 ] && grep -q "ansible-playbook is not available" "$log"; then
        echo "molecule_test.sh: molecule's 'ansible-playbook --version' check failed; the same command here says:"
        ansible-playbook --version 2>&1 | sed 's/^/  | /'
        echo "  | (rc ${PIPESTATUS[0]}; $(command -v ansible-playbook || echo 'not on PATH'))"
        echo "molecule_test.sh: testing $scenario once more"
        continue
    fi
    exit "$rc"
done
