"""Adapters that register third-party environment suites: ``rlve`` (rlve-gym) and ``rg`` (reasoning-gym)."""
