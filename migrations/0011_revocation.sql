-- Revocation that takes effect (issue 8): access tokens carry the user's token_version and their
-- session (the refresh-token family); bumping the version or revoking the family ends them.
ALTER TABLE users ADD COLUMN token_version integer NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN deactivated_at timestamptz;
CREATE INDEX short_links_user_idx ON short_links (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id) WHERE revoked_at IS NULL;
