"""Developer tools: local stand-ins for outside services (not used in production)."""
