"""Run every workload and print the table (see benchmarks/workloads.py)."""

from benchmarks.workloads import main

main()
