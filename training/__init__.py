"""Training, validation, export and dataset code of the confirmation model (never imported by workers).

The worker keeps what scoring needs (``workers/vision``); everything here runs on a developer's or
a training machine through ``kuzet model train|export-network|dataset`` and needs the ``train``
dependency group.
"""
