"""Audit a collection: duplicates, outliers and suspect labels (issue 12)."""
