"""runtime/engines: see the README layout section."""
