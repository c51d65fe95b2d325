"""Retention: the sweeper that deletes footage and audit records past their time, and legal hold's tags."""
