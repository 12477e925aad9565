"""Helpers the tests share: import them as `ifa.tests.support.<module>` (the repository root is
the `ifa` package, so this spelling works from any folder, as `ifa.benchmarks` does)."""
