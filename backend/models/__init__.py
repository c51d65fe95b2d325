"""Confirmation model versions: which one is live, which one runs in shadow, and their scores."""
