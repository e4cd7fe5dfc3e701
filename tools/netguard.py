"""SSRF guard for the web tools: parse a URL, resolve its host once, refuse internal addresses.

The fetcher connects to the address this guard returns (never to the name again), so a DNS answer
that changes between the check and the connection (rebinding) cannot reach an internal service.
Refused: loopback, private, link-local, cloud metadata, CGNAT, multicast, reserved and unspecified
addresses, also when spelled oddly (`2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1`) or wrapped in
IPv6 (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo). A host the user lists in
`settings.safety.allow_hosts` (a name, an address or a network) is let through; an entry with a
port (`searx.lan:8888`, `127.0.0.1:8888`, `[::1]:8888`) lets through that port only.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

__all__ = [
    "NetGuard",
    "Resolver",
    "Target",
    "URLRefused",
    "parse_ip",
    "refusal_reason",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
"""Turns (host, port) into address strings; the seam tests use to simulate DNS answers."""

_METADATA_NAMES = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_TEREDO = ipaddress.ip_network("2001::/32")
_V4_COMPAT = ipaddress.ip_network("::/96")
_METADATA_V6 = ipaddress.ip_address("fd00:ec2::254")
# Only these characters can make a number that inet_aton reads as an IPv4 address.
_NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$", re.IGNORECASE)
_WITH_PORT = re.compile(r"^(\[[^\]]+\]|[^:\[\]]+):(\d{1,5})$")


class URLRefused(ValueError):
    """The URL is malformed or points somewhere the guard does not let the agent go."""


class Target(BaseModel):
    """A checked URL: where to connect (pinned addresses) and what to send as Host and SNI."""

    model_config = ConfigDict(frozen=True)

    url: str
    scheme: str
    host: str
    port: int
    path: str
    addresses: list[str]

    def pinned_url(self, address: str) -> str:
        """The URL with the host replaced by one of the pinned addresses."""
        literal = f"[{address}]" if ":" in address else address
        return f"{self.scheme}://{literal}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        """The Host header the server expects (port omitted when it is the default)."""
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the operating system's resolver (getaddrinfo), deduplicated, in order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise URLRefused(f"cannot resolve host {host!r}: {e}") from None
    seen: list[str] = []
    for *_, sockaddr in infos:
        addr = str(sockaddr[0]).split("%", 1)[0]
        if addr not in seen:
            seen.append(addr)
    return seen


def parse_ip(host: str) -> IPAddress | None:
    """The address a host literal denotes, reading odd IPv4 spellings as inet_aton does."""
    h = host.strip("[]").rstrip(".")
    if "%" in h:  # a scoped IPv6 literal: the zone is meaningless to us
        h = h.split("%", 1)[0]
    try:
        return ipaddress.ip_address(h)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(h):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(h))
        except OSError:
            return None
    return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _V4_COMPAT and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal_reason(ip: IPAddress) -> str | None:
    """Why the guard refuses this address, or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip == _METADATA_V6:
            return "a cloud metadata address"
        if ip in _TEREDO:
            return "a Teredo address"
        if ip in _NAT64_LOCAL:
            return "a local-use NAT64 address"
        inner = _embedded_v4(ip)
        if inner is not None:
            why = refusal_reason(inner)
            return f"an IPv6 form of {inner}, {why}" if why else None
    if str(ip) == "169.254.169.254":
        return "a cloud metadata address"
    for flag, what in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, flag):
            return f"{'an' if what[0] in 'aeiou' else 'a'} {what} address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "a carrier-grade NAT address"
    if not ip.is_global:
        return "not a public address"
    return None


class NetGuard:
    """Checks URLs against the SSRF rules; `allow_hosts` entries are names, addresses or networks."""

    def __init__(
        self, allow_hosts: Sequence[str] = (), *, resolver: Resolver | None = None
    ) -> None:
        # Each allowed name or network with the one port it is for (None: every port).
        self._names: set[tuple[str, int | None]] = set()
        self._nets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]] = []
        for entry in allow_hosts:
            e = entry.strip().lower()
            scoped = _WITH_PORT.match(e)
            host, port = (scoped.group(1), int(scoped.group(2))) if scoped else (e, None)
            host = host.rstrip(".")
            try:
                self._nets.append((ipaddress.ip_network(host.strip("[]"), strict=False), port))
            except ValueError:
                self._names.add((host, port))
        self._resolve = resolver or system_resolver

    def _name_allowed(self, host: str, port: int) -> bool:
        return (host, None) in self._names or (host, port) in self._names

    def _address_allowed(self, ip: IPAddress, port: int) -> bool:
        return any(
            ip.version == n.version and ip in n and p in (None, port) for n, p in self._nets
        )

    def check(self, url: str) -> Target:
        """Parse and check `url`; return where to connect, or raise URLRefused saying why."""
        if any(c in url for c in "\x00\r\n\t "):
            raise URLRefused("the URL contains whitespace or control characters")
        try:
            parts = urlsplit(url.strip())
            port_part = parts.port
        except ValueError as e:
            raise URLRefused(f"not a valid URL: {e}") from None
        scheme = parts.scheme.lower()
        if not scheme or (
            scheme not in ("http", "https") and not parts.netloc and parts.path[:1].isdigit()
        ):
            hint = "" if url.lstrip().startswith("/") else f", e.g. 'https://{url.strip()}'"
            raise URLRefused(
                f"{url!r} is not an absolute URL: only http and https URLs can be fetched; "
                f"write it with its scheme and host{hint}"
            )
        if scheme not in ("http", "https"):
            raise URLRefused(f"only http and https URLs can be fetched, not {scheme!r}")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise URLRefused("URLs with credentials (user:password@host) are refused")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise URLRefused("the URL has no host")
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise URLRefused(
                    f"the host name {host!r} is not a valid international name"
                ) from None
        port = port_part or (443 if scheme == "https" else 80)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        allowed_name = self._name_allowed(host, port)

        literal = parse_ip(host)
        if literal is not None:
            addresses = [literal]
            host_label = str(literal)
        else:
            if host in _METADATA_NAMES and not allowed_name:
                raise URLRefused(f"{host} is a cloud metadata service; refused")
            addresses = []
            for a in self._resolve(host, port):
                ip = parse_ip(a)
                if ip is None:
                    raise URLRefused(f"the resolver returned {a!r} for {host}, not an address")
                addresses.append(ip)
            if not addresses:
                raise URLRefused(f"cannot resolve host {host!r}: no addresses")
            host_label = host
        if not allowed_name:
            for ip in addresses:
                why = refusal_reason(ip)
                if why and not self._address_allowed(ip, port):
                    shown = host if literal is None else url
                    raise URLRefused(
                        f"refused {shown}: {ip} is {why}. Internal and metadata addresses are off "
                        "limits unless the user lists the host in settings.safety.allow_hosts"
                    )
        return Target(
            url=url,
            scheme=scheme,
            host=host if literal is None else host_label,
            port=port,
            path=path,
            addresses=[str(ip) for ip in addresses],
        )
