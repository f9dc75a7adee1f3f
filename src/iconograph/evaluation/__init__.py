"""Checking predictions against truth: metrics and the HTML reports."""
