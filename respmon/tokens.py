"""Bearer tokens for devices and team members: 256-bit random, shown once, stored only as SHA-256."""

import hashlib
import secrets


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 is enough (no password stretching needed)."""
    return hashlib.sha256(token.encode()).hexdigest()
