"""Which host names and web origins count as this machine.

A web page that resolves its own domain to 127.0.0.1 (DNS rebinding) reaches a loopback
server with its own name in `Host`; checking that header against the names the server
really has is what tells such requests apart from local ones.
"""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from urllib.parse import urlsplit


def split_host(value: str) -> str:
    """The host of a `Host` header value, without port or brackets, lowercased."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value[1:]
    host, sep, port = value.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        value = host
    return value.rstrip(".")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


def is_loopback(host: str) -> bool:
    """localhost, *.localhost, 127.0.0.0/8 or ::1."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback


def is_wildcard(host: str) -> bool:
    ip = _ip(host)
    return ip is not None and ip.is_unspecified


@lru_cache(maxsize=256)
def is_own_address(host: str) -> bool:
    """Whether an IP literal is an address of this machine: only those can be bound."""
    ip = _ip(host)
    if ip is None:
        return False
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:
        return False
    return True


@lru_cache(maxsize=1)
def own_names() -> frozenset[str]:
    """The machine's host names: short, fully qualified and mDNS (.local)."""
    short = socket.gethostname().lower()
    names = {short, f"{short.split('.')[0]}.local"}
    try:
        names.add(socket.getfqdn().lower())
    except OSError:
        pass
    return frozenset(n.rstrip(".") for n in names if n)


class HostPolicy:
    """Which `Host` headers the server answers.

    Bound to loopback: loopback names only. Bound to the network: loopback names, the
    configured hosts, or (when none are configured) the machine's own names and addresses.
    `*` among the configured hosts turns the check off.
    """

    def __init__(self, bound_host: str, allowed: list[str] | None = None) -> None:
        self.loopback_only = is_loopback(split_host(bound_host))
        self.allowed = frozenset(split_host(h) for h in allowed or [] if h.strip())
        self.any_host = "*" in self.allowed

    def allows(self, host_header: str | None) -> bool:
        if host_header is None:
            return True  # HTTP/1.0 without Host: not something a browser sends
        host = split_host(host_header)
        if is_loopback(host):
            return True
        if self.loopback_only:
            return False
        if self.any_host or host in self.allowed:
            return True
        return not self.allowed and (host in own_names() or is_own_address(host))


class OriginPolicy:
    """Which browser origins may use the routes that change the machine: pages served
    from a loopback host (any port), plus an allowlist of exact origins."""

    def __init__(self, allowed: list[str] | None = None) -> None:
        self.allowed = frozenset(o.strip().rstrip("/").lower() for o in allowed or []
                                 if o.strip())

    def is_local(self, origin: str | None) -> bool:
        if origin is None:
            return True  # not a browser request (curl, SDKs, the CLI)
        origin = origin.strip().rstrip("/").lower()
        if origin in self.allowed:
            return True
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and is_loopback(
            (parts.hostname or "").rstrip("."))
