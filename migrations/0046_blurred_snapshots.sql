-- Privacy: beside each confirmed detection's snapshot, the same frame with faces blurred (owners and
-- city systems see that one; responders the clear one). NULL: none was made (an older detection, or
-- the face detector failed): owners are then told so, never shown the clear snapshot. The incident
-- keeps the blurred twin of the snapshot it shows; faces_blurred counts the regions blurred.
ALTER TABLE detections
    ADD COLUMN blurred_snapshot_key text,
    ADD COLUMN faces_blurred        integer CHECK (faces_blurred >= 0);
ALTER TABLE incidents ADD COLUMN blurred_snapshot_key text;
