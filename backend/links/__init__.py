"""Short HTTPS links to footage (``/i/{token}``): issued to a person for an incident's snapshot or
clip, resolved to a short-lived presigned URL, every view audited. Used by dispatch (pushes), the
phone API and the webhook outbox (``backend.links.service``; SQL in ``backend.links.repo``)."""
