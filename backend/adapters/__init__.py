"""Ports to the outside: object storage (S3) and push (FCM). The only modules importing their SDKs."""
