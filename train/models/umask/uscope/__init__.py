"""train/models/umask/uscope: see the README layout section."""
