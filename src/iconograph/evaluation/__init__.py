"""Checking predictions against truth: metrics for labels and boxes, comparisons, and the HTML reports."""
