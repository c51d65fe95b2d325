"""Recipients, escalation policies, push fan-out, the delivery log, short footage links."""
