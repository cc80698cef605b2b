"""train/simulator: see the README layout section."""
