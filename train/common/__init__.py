"""train/common: see the README layout section."""
