"""Shared plumbing: configuration, database, errors, logging, auth, queue."""
