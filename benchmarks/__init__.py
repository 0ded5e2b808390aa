"""Benchmarks of the ref.wire codecs (run ``python benchmarks/run.py``)."""
