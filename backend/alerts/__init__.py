"""Responders' side of an incident: actions, my alerts, incident detail, receipts."""
