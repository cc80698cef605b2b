"""train/data: see the README layout section."""
