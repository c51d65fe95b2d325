-- A phone's FCM token moves to another user only with proof that the request comes from the app
-- instance that holds it: the device key handed to that app at its last registration (SHA-256 stored,
-- the key itself never). NULL: registered before keys existed (the owner's next registration sets one).
ALTER TABLE devices ADD COLUMN key_hash bytea;
