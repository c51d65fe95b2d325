-- Owners' incident history: newest first per venue with a (opened_at, id) keyset cursor, the first
-- officer acceptance per incident, detections per camera, and the venue's access log by time.
CREATE INDEX incidents_venue_history_idx ON incidents (venue_id, opened_at, id);
CREATE INDEX incidents_region_history_idx ON incidents (region_id, opened_at, id);
CREATE INDEX incident_events_type_idx ON incident_events (incident_id, type, at);
CREATE INDEX detections_camera_incident_idx ON detections (camera_id, incident_id);
CREATE INDEX audit_log_venue_id_idx ON audit_log (venue_id, id) WHERE venue_id IS NOT NULL;
