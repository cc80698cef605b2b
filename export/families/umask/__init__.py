"""export/families/umask: see the README layout section."""
