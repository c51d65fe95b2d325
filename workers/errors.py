"""The job error tree, declared in ``backend.core.job_errors`` (domain code raises it too); kept here
so that worker modules can go on importing it from ``workers.errors``."""

from __future__ import annotations

from backend.core.job_errors import JobError, JobLost, PermanentError, TransientError

__all__ = ["JobError", "JobLost", "PermanentError", "TransientError"]
