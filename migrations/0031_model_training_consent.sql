-- A venue's owner may let its resolved incidents' clips train the confirmation model. Off unless
-- they say so; who said it and when is kept here and in the audit log.
ALTER TABLE venues
    ADD COLUMN model_training_consent     boolean NOT NULL DEFAULT false,
    ADD COLUMN model_training_consent_at  timestamptz,
    ADD COLUMN model_training_consent_by  uuid REFERENCES users (id);
