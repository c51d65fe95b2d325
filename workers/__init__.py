"""Background workers: one module per job kind, run by ``workers.runner``."""
