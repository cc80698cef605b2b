"""benchmarks/accuracy: see the README layout section."""
