"""Benchmarks of unilvseg against the published code paths; ``python -m benchmarks.run`` runs the suite."""
