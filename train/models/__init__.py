"""train/models: see the README layout section."""
