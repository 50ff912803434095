"""Benchmarks (`make bench`): each figure is printed beside a raw baseline measured in the same run."""
