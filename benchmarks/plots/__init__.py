"""benchmarks/plots: see the README layout section."""
