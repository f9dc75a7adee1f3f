"""Deciding labels: zero-shot prompts, thresholds and top-k decisions, prediction records."""
