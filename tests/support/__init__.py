"""Helpers shared by the test suites (emulator processes, mounts)."""
