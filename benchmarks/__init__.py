"""meshlift against skopeo on loopback registries: ``nox -s bench`` / ``python -m benchmarks``."""
