"""export/families: see the README layout section."""
