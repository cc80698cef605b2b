"""runtime/core: see the README layout section."""
