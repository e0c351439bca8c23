"""Who is calling: an API key (``Authorization: Bearer KEY``) or the console's session cookie.

The owner of a job, a watch or a dataset is the hash of the key that made it. Settings keep only
sha256 hashes of the keys. With no keys configured (the local default) the API and the console are
open and every caller is the owner ``local``; settings refuse that combination on a non-loopback
bind address. :func:`request_owner` is the one rule for a request; the dependency that applies it is
``deps.OwnerDep``, and the console's pages use the same function, so a page shows exactly what the
API shows that key.

The session cookie (set by the console's sign-in form) is ``<owner>.<expiry>.<signature>``: HMAC-SHA256
over owner and expiry with a secret kept in the data directory (:func:`session_secret`), HttpOnly,
SameSite=Lax. It names the key's owner id, never the key, and stops counting when it expires, when it
is signed out (:func:`revoke`: its signature is kept in Redis until it would have expired) or when
its key is removed from the settings. It authorises reading only (GET and HEAD): anything that
changes state through the API needs the bearer key, and the console's own forms carry a CSRF token
(:func:`csrf_token`) checked before they act.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from jobs.settings import hash_key, owner_of

from .problems import Problem

LOCAL_OWNER = "local"
SESSION_COOKIE = "cd_session"
CSRF_COOKIE = "cd_csrf"
SESSION_SECONDS = 12 * 3600  # a working day; signing in again takes one paste
SAFE_METHODS = ("GET", "HEAD")
SECRET_FILE = ".session-secret"


def _unauthorized(message: str, fix: str) -> Problem:
    return Problem.field("unauthorized", "Authorization", message, fix).with_headers({"WWW-Authenticate": "Bearer"})


def owner_for(authorization: str, key_hashes: list[str]) -> str:
    """The caller's owner id from its ``Authorization`` header, or 401 problem+json."""
    if not key_hashes:
        return LOCAL_OWNER
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise _unauthorized("missing API key", "send `Authorization: Bearer <your key>`")
    return owner_of_key(key.strip(), key_hashes)


def owner_of_key(key: str, key_hashes: list[str]) -> str:
    """The owner id of a plain API key, or 401 problem+json for a key that is not configured."""
    given = hash_key(key)
    for h in key_hashes:  # constant-time per comparison; the set of keys is small
        if hmac.compare_digest(given, h):
            return owner_of(h)
    raise _unauthorized("unknown API key", "check the key you were given")


def request_owner(authorization: str, cookie: str | None, method: str, key_hashes: list[str], secret: bytes,
                  revoked: Callable[[str], bool], now: float | None = None) -> str:
    """The one rule: the bearer key when one is sent; else, for reading, a valid session cookie that
    was not signed out (``revoked``); else 401 (an open API: ``local``)."""
    if not key_hashes or authorization:
        return owner_for(authorization, key_hashes)
    if cookie and method in SAFE_METHODS:
        owner = session_owner(cookie, key_hashes, secret, now)
        if owner is not None and revoked(cookie):
            owner = None
        if owner is not None:
            return owner
    raise _unauthorized("missing API key", "send `Authorization: Bearer <your key>`, or sign in at /sign-in")


# ------------------------------------------------------------------ the console's session cookie

def session_secret(data_dir: Path) -> bytes:
    """The signing secret, created once (mode 0600) in the data directory, so sessions survive a
    restart and every API process of one deployment signs alike."""
    path = data_dir / SECRET_FILE
    if not path.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".{SECRET_FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)  # first writer wins; a concurrent one reads the winner's
        except FileExistsError:
            pass
        os.unlink(tmp)
    return path.read_bytes()


def _sign(secret: bytes, message: str) -> str:
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def session_cookie(owner: str, secret: bytes, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + SESSION_SECONDS)
    payload = f"{owner}.{expires}"
    return f"{payload}.{_sign(secret, 'session:' + payload)}"


def session_owner(cookie: str, key_hashes: list[str], secret: bytes, now: float | None = None) -> str | None:
    """The owner a cookie names if its signature holds, it has not expired and its key is still configured."""
    owner, _, rest = cookie.partition(".")
    expires, _, sig = rest.partition(".")
    if not expires.isdigit() or not hmac.compare_digest(sig, _sign(secret, f"session:{owner}.{expires}")):
        return None
    if int(expires) < (time.time() if now is None else now):
        return None
    return owner if owner in {owner_of(h) for h in key_hashes} else None


def _revoked_key(cookie: str) -> str:
    return "cd:session-revoked:" + cookie.rpartition(".")[2]


def revoke(r, cookie: str, now: float | None = None) -> None:
    """Sign a session out for good: its signature is remembered (Redis ``r``) until it would have expired."""
    expires = cookie.partition(".")[2].partition(".")[0]
    left = int(expires) - int(time.time() if now is None else now) if expires.isdigit() else 0
    if left > 0:
        r.set(_revoked_key(cookie), "1", ex=left)


def is_revoked(r, cookie: str) -> bool:
    return bool(r.exists(_revoked_key(cookie)))


def new_csrf_nonce() -> str:
    return secrets.token_hex(16)


def csrf_token(nonce: str, secret: bytes) -> str:
    """The token a console form carries: bound to the browser's ``cd_csrf`` cookie by the secret,
    so another site can neither read nor forge it."""
    return _sign(secret, "csrf:" + nonce)


def csrf_ok(nonce: str | None, token: str | None, secret: bytes) -> bool:
    return bool(nonce and token) and hmac.compare_digest(csrf_token(nonce, secret), token)
