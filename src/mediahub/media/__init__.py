"""Use cases: ingest, manage, verify. They know nothing of HTTP; the CLI and the API call them."""
