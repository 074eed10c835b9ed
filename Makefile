# tiering.pmem — the two commands that matter: `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV       ?= .venv
PY         := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# The collection is used by its FQCN from this tree through a collections path of its own.
COLL_ROOT  := $(CURDIR)/.cache/collections
export ANSIBLE_COLLECTIONS_PATH := $(COLL_ROOT)
export ANSIBLE_FORCE_COLOR ?= 0
# One SSH exec per task instead of four: a quarter off every task on a TCG guest (measured: 10 tasks
# 56-59 s pipelined, 74-82 s not). The lab logs in as root, so no requiretty gets in the way.
export ANSIBLE_PIPELINING ?= True
LAB        := python3 lab/labctl.py
# Molecule scenarios of `make molecule`, in order; SCENARIO@RELEASE runs a one-guest scenario on that release.
SCENARIOS  ?= nvdimm nvdimm@bookworm labelled cxl legacy legacy@bookworm emulated safe_mode modules agent
# make test: the checks without guests, then the guest checks in two lanes side by side (lab/lanes.py),
# each lane one guest at a time, so the lab's two guests are busy and never three. Balanced by the
# durations of the last clean-clone run (the table at the end of make test). Not in make test, to keep
# it well inside CI's 90 minutes: nvdimm on trixie (labelled, safe_mode, agent and nvdimm-lab cover
# trixie NVDIMMs; make molecule-nvdimm), legacy@bookworm and boot-race-lab.
LANE_A     ?= unit sanity lint docs packaging-test molecule-labelled molecule-cxl molecule-legacy \
  molecule-safe_mode molecule-modules molecule-nvdimm@bookworm tierd-topology-lab
LANE_B     ?= molecule-agent molecule-emulated tierd-lab nvdimm-lab
APT_PACKAGES := qemu-system-x86 qemu-utils mmdebstrap fdisk e2fsprogs openssh-client python3-venv \
  chromium fonts-dejavu-core shellcheck
TIMED       = bash lab/timed.sh

.PHONY: help deps venv collection-link unit molecule test demo clean-lab lab-images build sanity lint docs packaging-test ecosystem-lab boot-race-lab tierd-lab tierd-lab-cxl tierd-topology-lab tierd-scale-lab bench-tierd bench-agent-scale bench-online-blocks bench-peers bench-peers-page-idle test-page-idle hostile-lab nvdimm-lab cxl-lab

help:
	@echo "make demo   - boot a lab guest with emulated pmem and run the collection against it"
	@echo "make test   - unit tests and the Molecule lab scenarios ($(SCENARIOS))"
	@echo "make build  - build the collection tarball"

deps:  ## Debian packages the lab needs (installed only when missing)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.stamp: requirements-dev.txt requirements-docs.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.stamp

collection-link:  ## only when missing or wrong: two lanes run this side by side
	@mkdir -p $(COLL_ROOT)/ansible_collections/tiering
	@[ "$$(readlink $(COLL_ROOT)/ansible_collections/tiering/pmem)" = "$(CURDIR)" ] || \
	  ln -sfn $(CURDIR) $(COLL_ROOT)/ansible_collections/tiering/pmem

unit: venv collection-link
	$(TIMED) unit $(PY) -m pytest -q tests/unit

molecule: deps venv collection-link
	@for s in $(SCENARIOS); do $(MAKE) --no-print-directory "molecule-$$s" || exit 1; done

# One scenario: make molecule-labelled; make molecule-nvdimm@bookworm (LAB_RELEASE for the scenario's
# one guest, and an ephemeral directory of its own so both releases can run side by side).
molecule-%: deps venv collection-link
	@s='$*'; scenario=$${s%@*}; release=; [[ $$s == *@* ]] && release=$${s#*@}; \
	if [[ -n $$release ]]; then export LAB_RELEASE=$$release MOLECULE_EPHEMERAL_DIRECTORY=$(CURDIR)/.cache/molecule/$$s; fi; \
	$(TIMED) "molecule-$$s" bash lab/molecule_test.sh $$scenario

test: deps venv collection-link
	$(TIMED) total bash -c '$(MAKE) --no-print-directory lab-images && python3 lab/lanes.py --lane "$(LANE_A)" --lane "$(LANE_B)"'

# The lab's images (trixie, bookworm), built once per recipe and cached, before the lanes need them.
lab-images: deps
	$(TIMED) lab-images bash -c '$(LAB) image --release trixie && $(LAB) image --release bookworm' 

sanity: venv
	$(TIMED) sanity bash tests/sanity/run.sh

lint: venv
	$(TIMED) lint bash tests/lint/run.sh

docs: venv
	$(TIMED) docs bash tests/docs/build.sh
	$(TIMED) changelog-lint $(VENV)/bin/antsibull-changelog lint

packaging-test: venv
	$(TIMED) packaging $(PY) -m pytest -q tests/packaging tests/awx

# The dax_kmem boot script against udev binding device_dax while it runs (a trixie legacy guest).
boot-race-lab: deps
	$(TIMED) boot-race-lab bash tests/lab/dax_kmem/boot_race.sh

# Hostile inputs on one trixie NVDIMM guest: every bad value for the modules, roles and tierd's config
# is refused with a message naming it and what is valid, no traceback, and the host unchanged.
hostile-lab: deps venv collection-link
	$(TIMED) hostile-lab bash tests/lab/hostile/run.sh

# tierd on a trixie NVDIMM guest with DAMON: hot set to DRAM, cold stays on PMEM, a 30 % PMEM quota
# holds, kill -9 -> systemd restarts it and the workloads' memory is intact.
tierd-lab: deps
	$(TIMED) tierd-lab bash tests/lab/tierd/run.sh

# tierd at scale (make test runs it for 10 intervals in the tierd-lab guest): 240 small processes in 20 workloads, 10 replaced every
# interval, on one kdamond: targets committed in place, stable PIDs keep their target; CPU and RSS.
tierd-scale-lab: deps
	TIERD_LAB_TEST=scale_test.py TIERD_LAB_NAME=t-tierd-scale-lab TIERD_LAB_MAX_INTERVALS=$${TIERD_LAB_MAX_INTERVALS:-15} $(TIMED) tierd-scale-lab bash tests/lab/tierd/run.sh

# The same tierd lab test with the slow tier on CXL memory (a RAM region of the cxl flavour's device;
# not part of make test: the cxl scenario is): hot pages promoted from the CXL node, the quota held.
tierd-lab-cxl: deps
	TIERD_LAB_FLAVOUR=cxl TIERD_LAB_APPEND=transparent_hugepage=madvise $(TIMED) tierd-lab-cxl bash tests/lab/tierd/run.sh

# tierd on the two-socket flavour (#14 topology; in make test), three memory tiers (DRAM 0-1, a
# CXL-like middle tier 4-5, PMEM 2-3): a workload pinned to each socket, its buffer on the other socket's
# slower memory, must get its hot pages on the DRAM of the socket it runs on; DRAM's cold pages demoted
# to the next tier near their node, not past it; then a budget on node 1 (dram_budget_per_node) held by priority.
tierd-topology-lab: deps
	TIERD_LAB_FLAVOUR=two-socket TIERD_LAB_TEST=topology_test.py TIERD_LAB_APPEND=transparent_hugepage=madvise $(TIMED) tierd-topology-lab bash tests/lab/tierd/run.sh

# The same tierd lab test on the page_idle backend (not part of make test): needs a guest kernel with
# CONFIG_IDLE_PAGE_TRACKING, built once from Debian's linux-source-6.12 (~15 min on 2 cores, then cached).
test-page-idle: deps
	$(TIMED) kernel-page-idle bash lab/kernel/build.sh
	TIERD_LAB_BACKEND=page_idle $(TIMED) tierd-lab-page-idle bash tests/lab/tierd/run.sh

# Benchmarks (not part of make test): results and commands in bench/RESULTS.md.
bench-tierd: deps
	$(TIMED) bench-converge bash bench/converge/run.sh
	$(TIMED) bench-migrate bash bench/migrate/run.sh
	$(TIMED) bench-agent-scan python3 bench/agent_scan/run.py --sizes-gib 1 4 --scans 3 --backend fixed-regions

# tierd against its peers (bench/peers/README.md): memtierd is built first when its mirror is there
# (peer f is reported as skipped otherwise); the page_idle peer needs the lab kernel, so it is a run
# of its own in a guest booted with it.
bench-peers: deps
	@bash bench/peers/build_memtierd.sh || echo "bench-peers: memtierd not built (bench/peers/build_memtierd.sh says why): peer f will be skipped"
	$(TIMED) bench-peers bash bench/peers/run.sh

bench-peers-page-idle: deps
	$(TIMED) kernel-page-idle bash lab/kernel/build.sh
	$(TIMED) bench-peers-page-idle bash bench/peers/run.sh --page-idle

# tierd's scan CPU at many workloads over a synthetic tree on the host, extrapolated to 1,000 / 1 TiB.
bench-agent-scale:
	$(TIMED) bench-agent-scale python3 bench/agent_scale/run.py

bench-online-blocks: deps venv collection-link
	$(TIMED) bench-online-blocks bash bench/online_blocks/run.sh
	$(TIMED) bench-noop-rerun bash bench/noop_rerun/run.sh

# The installed collection's status playbook (by FQCN) and an ansible-runner job, as AWX runs it, on one guest.
ecosystem-lab: deps venv
	@json=$$($(LAB) up eco-nvdimm --flavour nvdimm) || exit 1; \
	LAB_GUEST_JSON="$$json" $(TIMED) ecosystem-lab $(PY) -m pytest -q tests/packaging tests/awx -k "status_playbook or ansible_runner"; rc=$$?; \
	$(LAB) down eco-nvdimm >/dev/null; exit $$rc

# make test's share of both on ONE guest (a boot saved): the hostile cases of cases.MAKE_TEST (every kind
# of bad input; all 89 are `make hostile-lab`), then the installed collection's status playbook and the
# ansible-runner job on the same guest (they only read it).
nvdimm-lab: deps venv collection-link
	@$(LAB) down nvdimm-lab >/dev/null 2>&1; \
	HOSTILE_LAB_NAME=nvdimm-lab HOSTILE_LAB_KEEP=1 HOSTILE_ONLY=make-test $(TIMED) hostile-lab-make-test bash tests/lab/hostile/run.sh; hostile=$$?; \
	json=$$($(LAB) info nvdimm-lab) && LAB_GUEST_JSON="$$json" $(TIMED) ecosystem-lab $(PY) -m pytest -q tests/packaging tests/awx -k "status_playbook or ansible_runner"; eco=$$?; \
	$(LAB) down nvdimm-lab >/dev/null; echo "nvdimm-lab: hostile inputs exit $$hostile, ecosystem exit $$eco"; [ $$hostile = 0 ] && [ $$eco = 0 ]

# CXL (not part of make test yet): cxl_region and dax_kmem on the cxl flavour (trixie's QEMU 10 from a
# cached chroot): a RAM region left offline, onlined movable in a lower tier, refused while online, given back.
cxl-lab: deps venv collection-link
	$(TIMED) cxl-lab bash tests/lab/cxl/run.sh


demo: deps venv collection-link
	$(TIMED) demo bash lab/demo.sh

build: venv
	ansible-galaxy collection build --force --output-path build/

clean-lab:
	$(LAB) down --all
