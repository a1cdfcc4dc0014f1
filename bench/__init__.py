"""Benchmarks comparing this project with peers or physical limits, measured in the same run."""
