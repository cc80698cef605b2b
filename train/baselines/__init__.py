"""train/baselines: see the README layout section."""
