"""Models mmlens builds or ships itself (no downloads)."""
