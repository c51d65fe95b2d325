"""Signed, ordered, replayable webhooks to city systems (Standard Webhooks JSON or CAP 1.2 XML)."""
