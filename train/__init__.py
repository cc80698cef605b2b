"""train package (see umask/__init__.py)."""
