"""Webhook events of a watch: the body, its signature, and which targets may receive it.

Events: ``checkpoint.compared`` (every succeeded comparison, ``regression`` true or false),
``regression.detected`` (additionally, when a rule fired), ``checkpoint.failed`` (the job failed or
was cancelled; never judged as a regression). The body is JSON; the header
``X-Circuitdiff-Signature: sha256=<hex>`` is HMAC-SHA256 of the raw body bytes with the watch's
secret, so a receiver recomputes it over exactly the bytes it got.

Targets: only ``http``/``https``; a host that resolves to a loopback, private, link-local,
multicast, reserved or unspecified address is refused at creation and again at every delivery (the
name may resolve elsewhere by then), unless ``CIRCUITDIFF_WEBHOOK_ALLOW_PRIVATE=true``: a service
shared by a team must not become a way into its own network.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from urllib.parse import urlsplit

from .store import WatchRecord

EVENTS = ("checkpoint.compared", "regression.detected", "checkpoint.failed")
SIGNATURE_HEADER = "X-Circuitdiff-Signature"


class TargetRefused(ValueError):
    """The URL may not receive webhooks; the message says why."""


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global)


def check_target(url: str, *, allow_private: bool) -> None:
    """Raise :class:`TargetRefused` unless ``url`` is http(s) and (unless allowed) resolves only to
    public addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("only http:// and https:// URLs with a host are allowed")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not allowed; authenticate by the signature")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise TargetRefused(f"host {parts.hostname!r} does not resolve ({e})") from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if _blocked(ip):
            raise TargetRefused(f"host {parts.hostname!r} resolves to {ip}, a loopback/private/link-local address")


def event_body(event: str, watch: WatchRecord, entry: dict, base_path: str = "/v1") -> bytes:
    wid = watch.id
    body = {
        "event": event,
        "watch_id": wid,
        "watch_name": watch.name,
        "checkpoint": entry["checkpoint"],
        "fingerprint": entry["fingerprint"],
        "job_id": entry["job_id"],
        "status": entry["status"],
        "regression": entry.get("regression"),
        "reasons": entry.get("reasons") or [],
        "alignment": entry.get("alignment"),
        "student_logit_diff": entry.get("student_logit_diff"),
        "sent_at": time.time(),
        "links": {
            "watch": f"{base_path}/watches/{wid}",
            "history": f"{base_path}/watches/{wid}/history",
            "report": f"{base_path}/watches/{wid}/report",
            "job": f"{base_path}/comparisons/{entry['job_id']}",
            "job_report": f"{base_path}/comparisons/{entry['job_id']}/report",
        },
    }
    return json.dumps(body, sort_keys=True).encode()
