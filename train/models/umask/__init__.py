"""train/models/umask: see the README layout section."""
