-- Sign-in throttling (issue 8): failures per account (the login as typed, lower-cased, known or not)
-- and per client address, with the lock they earned. Rows are pruned by the housekeeping job.
CREATE TABLE sign_in_throttle (
    scope           text NOT NULL CHECK (scope IN ('account', 'address')),
    key             text NOT NULL,
    failures        integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_failure_at timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz,
    PRIMARY KEY (scope, key)
);
CREATE INDEX sign_in_throttle_last_failure_idx ON sign_in_throttle (last_failure_at);
