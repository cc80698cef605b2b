"""runtime/families: see the README layout section."""
