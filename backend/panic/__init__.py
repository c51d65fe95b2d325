"""Staff panic button: a one-tap alert from a phone that opens an incident at once."""
