"""Police live view: a venue's consent, time-limited audited grants, camera segments and HLS playlists."""
