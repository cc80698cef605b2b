"""benchmarks/latency: see the README layout section."""
