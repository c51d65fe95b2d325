-- The overload policy (issue 24) measures how fast the server model's clips are being decided: the
-- detections decided in the last minute, read by every API process once a second and at each scrape.
CREATE INDEX detections_decided_idx ON detections (decided_at) WHERE decided_at IS NOT NULL;
