"""Generated at build time from proto/vault/v1/vault.proto (setup.py)."""
