-- The model's own threshold when a camera was calibrated, so the venue's stats can show the threshold
-- the camera's detections are judged at, raised or not. NULL on rows calibrated before it was kept.
ALTER TABLE camera_calibration ADD COLUMN model_threshold real CHECK (model_threshold BETWEEN 0 AND 1);
