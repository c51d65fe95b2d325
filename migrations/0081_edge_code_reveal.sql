-- The console shows a new edge box's enrolment code once, on the page it redirects to after the
-- form (Post/Redirect/Get): the redirect carries the code in a short-lived signed cookie, and that
-- page shows it only while this one-time nonce (SHA-256) is unused; it is cleared when shown.
ALTER TABLE edge_boxes ADD COLUMN reveal_hash bytea;
