"""What the tests and benchmarks use to drive the program and the cluster; not part of what users run."""
