"""bastion's benchmarks: ``python -m benchmarks`` (see ``__main__.py`` and docs/performance.md)."""
