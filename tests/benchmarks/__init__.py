"""The benchmark suite: trackerfs against curl, raw httpx and rclone, on loopback.

Run it with ``python -m tests.benchmarks [--quick] [--only NAME …]`` (see docs/benchmarks.md).
Benchmarks print figures and ratios; they never assert on time. No module here is named
``test_*`` and ``conftest.py`` keeps pytest out of the package.
"""
