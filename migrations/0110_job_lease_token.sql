-- Fenced jobs: every claim draws a fresh lease token, and completing, retrying, burying or renewing
-- a job succeeds only with the token of the claim that holds it. A worker whose lease lapsed (a long
-- pause, a partition) and whose job another worker has since claimed can no longer delete or
-- re-queue it under that other worker: it learns that it lost the job instead.
ALTER TABLE jobs ADD COLUMN lease_token uuid;
