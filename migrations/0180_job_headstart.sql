-- Claims by urgency (issue 24): within a lane and priority, a job is claimed in order of its due
-- time less its headstart. Confirmations of clips the camera was sure of (edge score) get ahead of
-- those that arrived up to score x KUZET_CONFIRM_URGENCY_S seconds before them, no further, so a
-- backlog is served by urgency and age rather than by arrival alone, and nothing waits for ever.
ALTER TABLE jobs ADD COLUMN headstart_s real NOT NULL DEFAULT 0 CHECK (headstart_s >= 0);
