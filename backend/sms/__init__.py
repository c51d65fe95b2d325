"""The SMS channel: the SMS log, budgets, receipts, verified phone numbers (issue 23)."""
