"""Placeholder CLI (filled in below)."""


def main() -> None:
    print("umask")
