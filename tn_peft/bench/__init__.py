"""Benchmarks run by ``tn-peft bench NAME``; each prints side-by-side ratios and writes JSON."""
