"""What a venue's owner (and the region's dispatchers, and admins) can look back on: incident
history, each incident's full timeline, audited footage access and the venue's access log."""
