"""Webhook events of a watch: the body, its signature, and which targets may receive it.

Events: ``checkpoint.compared`` (every succeeded comparison, ``regression`` true or false),
``regression.detected`` (additionally, when a rule fired), ``checkpoint.failed`` (the job failed or
was cancelled, or the checkpoint was refused before any job: ``error`` says why and how to fix it;
never judged as a regression). The body is JSON; the header
``X-Circuitdiff-Signature: sha256=<hex>`` is HMAC-SHA256 of the raw body bytes with the watch's
secret, so a receiver recomputes it over exactly the bytes it got.

Targets: only ``http``/``https``; a host that resolves to a loopback, private, link-local,
multicast, reserved or unspecified address, or to an IPv6 address that embeds such an IPv4 one
(mapped, 6to4, Teredo, NAT64), is refused at creation and again at every delivery (the name may
resolve elsewhere by then), unless ``CIRCUITDIFF_WEBHOOK_ALLOW_PRIVATE=true``: a service shared by a
team must not become a way into its own network. Delivery connects to the very address it checked
(:func:`post`), so a name that answers a public address to the check and loopback to the connection
(DNS rebinding) still reaches only the public one.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the store imports the request, which imports the URL rule from here
    from .store import WatchRecord

EVENTS = ("checkpoint.compared", "regression.detected", "checkpoint.failed")
SIGNATURE_HEADER = "X-Circuitdiff-Signature"


class TargetRefused(ValueError):
    """The URL may not receive webhooks; the message says why."""


class TargetUnresolved(TargetRefused):
    """The host does not resolve now: refused at creation, retried at delivery (DNS comes back)."""


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# IPv6 ranges whose low 32 bits are an IPv4 address a gateway forwards to (NAT64, RFC 6052/8215).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
    6to4 (2002:AABB:CCDD::), Teredo (2001:0::, the client's), NAT64 (64:ff9b::a.b.c.d)."""
    out = [v4 for v4 in (ip.ipv4_mapped, ip.sixtofour) if v4 is not None]
    if ip.teredo:
        out.append(ip.teredo[1])
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if any(ip in net for net in _NAT64) or (int(ip) >> 32 == 0 and int(ip) > 1):
        out.append(low)
    return out


def _blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and any(_blocked(v4) for v4 in _embedded_ipv4(ip)):
        return True  # a public-looking IPv6 address that a relay turns into a private IPv4 one
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global)


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook target by its shape alone (checked when a watch is created);
    None when it can."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError for ':99999', ':abc', ':-1'
    except ValueError as e:
        return f"not a valid URL ({e})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "only http:// and https:// URLs with a host are allowed"
    if parts.username or parts.password:
        return "credentials in the URL are not allowed; authenticate by the signature"
    if port == 0:
        return "port 0 cannot receive a webhook"
    return None


@dataclass(frozen=True)
class Target:
    """A checked webhook target: the address it resolved to, which is the one delivery connects to
    (resolving again at connect time would let a rebinding name point the POST at loopback)."""

    url: str
    ip: str
    port: int

    def connect_url(self) -> str:
        parts = urlsplit(self.url)
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return urlunsplit((parts.scheme, f"{host}:{self.port}", parts.path or "/", parts.query, ""))

    def host_header(self) -> str:
        parts = urlsplit(self.url)
        default = 443 if parts.scheme == "https" else 80
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
        return host if self.port == default else f"{host}:{self.port}"


def resolve_target(url: str, *, allow_private: bool) -> Target:
    """Check ``url`` and pin the address delivery connects to. :class:`TargetRefused` unless it is a
    well-formed http(s) URL whose host resolves (unless ``allow_private``) only to public addresses."""
    problem = url_problem(url)
    if problem:
        raise TargetRefused(problem)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise TargetUnresolved(f"host {parts.hostname!r} does not resolve ({e})") from None
    ips = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not allow_private:
        for ip in ips:
            if _blocked(ip):
                raise TargetRefused(f"host {parts.hostname!r} resolves to {ip}, a loopback/private/link-local "
                                    "address (or one that embeds such an IPv4 address)")
    return Target(url, str(ips[0]), port)


def check_target(url: str, *, allow_private: bool) -> None:
    """Raise :class:`TargetRefused` unless ``url`` may receive webhooks now (see :func:`resolve_target`)."""
    resolve_target(url, allow_private=allow_private)


def post(url: str, body: bytes, headers: dict[str, str], *, allow_private: bool, timeout: float) -> httpx.Response:
    """POST ``body`` to the address :func:`resolve_target` checked, with the URL's own host in the
    ``Host`` header and as the TLS server name (SNI and certificate check)."""
    target = resolve_target(url, allow_private=allow_private)
    host = urlsplit(url).hostname or ""
    extensions = {"sni_hostname": host} if urlsplit(url).scheme == "https" else {}
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        request = client.build_request("POST", target.connect_url(), content=body,
                                       headers={**headers, "Host": target.host_header()}, extensions=extensions)
        return client.send(request)


def event_body(event: str, watch: "WatchRecord", entry: dict, base_url: str = "") -> bytes:
    """``links`` are ``base_url`` + the API path: absolute when the deployment set its public base URL
    (``CIRCUITDIFF_PUBLIC_BASE_URL``), else paths a receiver resolves against the API's address. A
    refused checkpoint (no job) has its ``error`` and no job links."""
    wid, v1 = watch.id, base_url.rstrip("/") + "/v1"
    links = {
        "watch": f"{v1}/watches/{wid}",
        "history": f"{v1}/watches/{wid}/history",
        "report": f"{v1}/watches/{wid}/report",
    }
    if entry.get("job_id"):
        links["job"] = f"{v1}/comparisons/{entry['job_id']}"
        links["job_report"] = f"{v1}/comparisons/{entry['job_id']}/report"
    body = {
        "event": event,
        "watch_id": wid,
        "watch_name": watch.name,
        "checkpoint": entry["checkpoint"],
        "fingerprint": entry["fingerprint"],
        "job_id": entry.get("job_id"),
        "status": entry["status"],
        "regression": entry.get("regression"),
        "reasons": entry.get("reasons") or [],
        "verdict": entry.get("verdict"),
        "alignment": entry.get("alignment"),
        "student_logit_diff": entry.get("student_logit_diff"),
        "error": entry.get("error"),
        "sent_at": time.time(),
        "links": links,
    }
    return json.dumps(body, sort_keys=True).encode()
