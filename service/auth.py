"""API keys: ``Authorization: Bearer KEY``; the owner of a job is the hash of the key that made it.

Settings keep only sha256 hashes of the keys. With no keys configured (the local default) the API
is open and every caller is the owner ``local``; settings refuse that combination on a
non-loopback bind address. The dependency that applies this to a request is ``deps.OwnerDep``.
"""

from __future__ import annotations

import hmac

from jobs.settings import hash_key, owner_of

from .problems import Problem

LOCAL_OWNER = "local"


def owner_for(authorization: str, key_hashes: list[str]) -> str:
    """The caller's owner id from its ``Authorization`` header, or 401 problem+json."""
    if not key_hashes:
        return LOCAL_OWNER
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Problem.field(
            "unauthorized", "Authorization", "missing API key", "send `Authorization: Bearer <your key>`"
        ).with_headers({"WWW-Authenticate": "Bearer"})
    given = hash_key(key.strip())
    for h in key_hashes:  # constant-time per comparison; the set of keys is small
        if hmac.compare_digest(given, h):
            return owner_of(h)
    raise Problem.field(
        "unauthorized", "Authorization", "unknown API key", "check the key you were given"
    ).with_headers({"WWW-Authenticate": "Bearer"})
