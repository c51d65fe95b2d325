"""Responders' phones and their FCM registration tokens."""
