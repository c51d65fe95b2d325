"""Who is on duty, where; officers' locations and the nearest-officer query."""
