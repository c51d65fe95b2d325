-- The history's date filters are on the camera's time (an incident's first detection, first_seen_at),
-- the time every page, the CSV and the API show: a backlog an edge box uploads hours late is found
-- on the day its camera saw it. The listing stays ordered (and paged) by opened_at.
CREATE INDEX incidents_venue_seen_idx ON incidents (venue_id, first_seen_at);
CREATE INDEX incidents_region_seen_idx ON incidents (region_id, first_seen_at);
