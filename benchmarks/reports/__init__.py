"""benchmarks/reports: see the README layout section."""
