"""tierd: moves each workload's pages between DRAM and PMEM NUMA nodes by how hot they are."""

__version__ = "0.1.0"
