"""Outbound HTTP to the public internet only: the guard that keeps webhooks from being a request forgery.

An insurer chooses the URL its webhook events are POSTed to, so the URL is an attacker's input aimed at the
bureau's own network (server-side request forgery, OWASP SSRF Prevention Cheat Sheet). The guard has three
parts, used when an endpoint is saved and again at every delivery:

1. :func:`parse_url` reads the URL strictly: ``http`` or ``https`` only, no user name or password, an IP
   address only in its usual spelling (``127.1``, ``2130706433``, ``0177.0.0.1`` and ``0x7f.0.0.1`` all mean
   127.0.0.1 to the system resolver, so they are refused rather than interpreted), no control characters.
   Non-ASCII host names go through IDNA first, so 127.0.0.1 written in full-width digits (U+FF10 to U+FF19)
   with ideographic full stops (U+3002) is read as 127.0.0.1.
2. :func:`addresses_for` resolves the name once and checks **every** address against the IANA IPv4 and IPv6
   Special-Purpose Address Registries (RFC 6890 and its updates): loopback, private, shared (RFC 6598),
   link-local, multicast, unspecified, reserved, documentation, benchmarking, unique-local, site-local,
   discard, Teredo; an address embedding an IPv4 address (IPv4-mapped, IPv4-translated, NAT64 RFC 6052,
   6to4 RFC 3056) is judged by the embedded address. One refused address refuses the name, so a name with a
   public and a private address cannot win half the time. The bureau may allow named on-premise receivers
   (:class:`AllowList`); unspecified and multicast addresses stay refused even then.
3. :func:`post` connects to an address that was checked (no second look-up, so a name cannot resolve public
   for the check and private for the connection: DNS rebinding), sends the name in the ``Host`` header and,
   for https, in SNI and certificate verification. It never follows a redirect and gives up after one
   deadline for the whole exchange, however slowly the receiver answers.

No Django here: callers pass the allow-list and the timeout in. Tests substitute :func:`resolve` (or the
system resolver under it) and :func:`tls_context`.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import re
import socket
import ssl
import string
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 2048


class RefusedURLError(ValueError):
    """The URL cannot be used. ``code``: ``malformed``, ``scheme``, ``userinfo``, ``ip_spelling``, ``port`` or
    ``address`` (the host is, or resolves to, an address that is not allowed, or does not resolve at all).
    ``detail`` names the address and why, for the bureau's staff and logs; insurers get a message by code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class DeliveryError(Exception):
    """No HTTP answer came: connection refused or reset, timeout, TLS failure, a malformed answer.
    The message is for the bureau's staff only (it would make a port scanner of the insurer)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: ``host`` is ASCII (IDNA for names, the bare address for IP literals)."""

    scheme: str
    host: str
    port: int
    request_target: str  # path and query, sent on the request line
    literal: IPAddress | None  # the host, when the URL names an address rather than a name


# --- 1. the URL ---------------------------------------------------------------------------------------

_DOTTED_QUAD = re.compile(r"(?:\d{1,3}\.){3}\d{1,3}")
# WHATWG URL: a host whose last label is a number is an IPv4 address in some spelling (decimal, octal, hex).
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|\d+)")
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
# Printable ASCII that may stay as it is in a request target; anything else is percent-encoded.
_TARGET_SAFE = "".join(ch for ch in string.printable if ch not in string.whitespace + "%") + "%"


def parse_url(url: str) -> Target:
    """Read ``url`` strictly or raise :class:`RefusedURLError`. Resolves nothing."""
    if len(url) > MAX_URL_LENGTH or any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url) or "\\" in url:
        raise RefusedURLError("malformed", "too long, or holds a space, a control character or a backslash")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise RefusedURLError("malformed", f"unreadable URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise RefusedURLError("scheme", f"scheme {scheme or 'none'!r} is not http or https")
    if "@" in parts.netloc:
        raise RefusedURLError("userinfo", "the URL holds a user name or password")
    raw_host, port = _split_netloc(parts.netloc, DEFAULT_PORTS[scheme])
    host, literal = _read_host(raw_host)
    path = quote(parts.path or "/", safe=_TARGET_SAFE)
    if not path.startswith("/"):
        raise RefusedURLError("malformed", "the path does not start with /")
    query = quote(parts.query, safe=_TARGET_SAFE)
    return Target(scheme, host, port, f"{path}?{query}" if query else path, literal)


def _split_netloc(netloc: str, default_port: int) -> tuple[str, int]:
    if netloc.startswith("["):
        host, bracket, rest = netloc[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise RefusedURLError("malformed", "unbalanced brackets around an IPv6 address")
        port_text = rest[1:]
        host = f"[{host}]"
    else:
        host, _, port_text = netloc.partition(":")
    if not port_text:
        return host, default_port
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise RefusedURLError("port", f"port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def _read_host(raw: str) -> tuple[str, IPAddress | None]:
    if raw.startswith("["):
        try:
            address = ipaddress.IPv6Address(raw[1:-1])
        except ValueError:
            raise RefusedURLError("ip_spelling", "not an IPv6 address between the brackets") from None
        if address.scope_id:
            raise RefusedURLError("ip_spelling", "an IPv6 zone index is never public")
        return str(address), address
    try:
        # IDNA 2003 with nameprep (NFKC): full-width digits and ideographic full stops become ASCII here,
        # before any of the checks below, exactly as a resolver would read them.
        host = raw.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise RefusedURLError("malformed", "the host name is not a valid internationalised name") from None
    host = host.removesuffix(".")
    if not host:
        raise RefusedURLError("malformed", "no host")
    if _DOTTED_QUAD.fullmatch(host):
        try:
            return host, ipaddress.IPv4Address(host)  # refuses leading zeros (octal to some parsers)
        except ValueError:
            raise RefusedURLError("ip_spelling", f"{host!r} is not an IPv4 address in the usual spelling") from None
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]) or _inet_aton_accepts(host):
        raise RefusedURLError("ip_spelling", f"{host!r} spells an IPv4 address in an unusual way")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise RefusedURLError("malformed", f"{host!r} is not a valid host name")
    return host, None


def _inet_aton_accepts(host: str) -> bool:
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


# --- 2. the addresses ------------------------------------------------------------------------------------


def _table(rows: Iterable[tuple[str, str]]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(network), kind) for network, kind in rows)


# IANA IPv4 Special-Purpose Address Registry (RFC 6890, 6598, 7526, 8190) plus multicast (RFC 5771) and the
# former class E: nothing here is a public webhook receiver.
_IPV4_SPECIAL = _table([
    ("0.0.0.0/8", "unspecified ('this network')"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast (deprecated)"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # includes the limited broadcast 255.255.255.255
])  # fmt: skip
# IANA IPv6 Special-Purpose Address Registry; the first match names the kind, so narrow blocks come first.
_IPV6_SPECIAL = _table([
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible (deprecated)"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001::/32", "Teredo tunnel"),
    ("2001:db8::/32", "documentation"),
    ("2001::/23", "IETF protocol assignments"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing (SRv6)"),
    ("fc00::/7", "unique local (private)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
])  # fmt: skip
_IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052
# Never a receiver, even when the bureau allows a host or a network that would contain them: connecting to
# 0.0.0.0 or :: reaches this very machine, and multicast or broadcast is no single receiver.
_NEVER = _table([("0.0.0.0/8", ""), ("224.0.0.0/4", ""), ("255.255.255.255/32", ""), ("::/128", ""), ("ff00::/8", "")])


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the forms that carry one."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _IPV4_TRANSLATED or address in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def address_kind(address: IPAddress) -> str | None:
    """Why ``address`` is not a public internet address, or None when it is one."""
    inner = embedded_ipv4(address)
    if inner is not None:
        kind = address_kind(inner)
        return f"{kind} (embedded {inner})" if kind else None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "scoped (zone index)"
        kind = _first_kind(address, _IPV6_SPECIAL)
        if kind is None and address not in _IPV6_GLOBAL_UNICAST:
            kind = "reserved (outside 2000::/3)"
        return kind
    return _first_kind(address, _IPV4_SPECIAL)


def _first_kind(address: IPAddress, table: tuple[tuple[IPNetwork, str], ...]) -> str | None:
    return next((kind for network, kind in table if address.version == network.version and address in network), None)


def _never_deliverable(address: IPAddress) -> bool:
    return any(_first_kind(a, _NEVER) is not None for a in (address, embedded_ipv4(address)) if a is not None)


@dataclass(frozen=True)
class AllowList:
    """On-premise receivers the bureau allows although they are not public: host names (exact, any address
    they resolve to) and networks (an address, or a CIDR block). Every insurer may name an allowed receiver,
    so keep the list to the receivers themselves rather than whole networks."""

    names: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Read ``["hooks.onprem.example", "10.20.0.5", "fd00:1::/64"]``; raises ValueError on a bad entry."""
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            try:
                host, literal = _read_host(entry)
            except RefusedURLError as exc:
                raise ValueError(f"{entry!r} is neither a host name nor a network ({exc.detail})") from None
            if literal is not None:  # pragma: no cover - ip_network accepted every literal above
                networks.append(ipaddress.ip_network(literal))
            else:
                names.add(host)
        return cls(frozenset(names), tuple(networks))

    def permits(self, host: str, address: IPAddress) -> bool:
        if _never_deliverable(address):
            return False
        if host in self.names:
            return True
        candidates = [a for a in (address, embedded_ipv4(address)) if a is not None]
        return any(a.version == n.version and a in n for a in candidates for n in self.networks)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for ``host`` (one look-up). Raises OSError when it gives none.

    Module-level so that tests can substitute a resolver (a name public at one moment, private the next)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]))
        if address not in addresses:
            addresses.append(address)
    return addresses


def addresses_for(target: Target, allow: AllowList) -> list[IPAddress]:
    """The addresses to connect to, every one of them checked; raises :class:`RefusedURLError` (``address``) when
    the name does not resolve or any of its addresses is neither public nor allowed."""
    if target.literal is not None:
        addresses: list[IPAddress] = [target.literal]
    else:
        try:
            addresses = resolve(target.host, target.port)
        except (OSError, UnicodeError, ValueError) as exc:
            raise RefusedURLError("address", f"{target.host} does not resolve ({exc.__class__.__name__})") from None
        if not addresses:
            raise RefusedURLError("address", f"{target.host} resolves to no address")
    refused = [
        f"{address} is {kind}"
        for address in addresses
        if ((kind := address_kind(address)) is not None or _never_deliverable(address))
        and not allow.permits(target.host, address)
    ]
    if refused:
        name = "" if target.literal is not None else f"{target.host} resolves to "
        raise RefusedURLError("address", name + "; ".join(refused))
    return addresses


# --- 3. the connection ----------------------------------------------------------------------------------


def _connect(address: IPAddress, port: int, timeout: float) -> socket.socket:
    """A TCP connection to exactly ``address``: a numeric address, so nothing is looked up again."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((str(address), port))
    except BaseException:
        sock.close()
        raise
    return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: Target, address: IPAddress, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.pinned = address

    def connect(self) -> None:
        self.sock = _connect(self.pinned, self.port, self.timeout)  # type: ignore[arg-type]


def tls_context() -> ssl.SSLContext:
    """The system's trusted CAs, certificate and host name checks on (tests substitute their own CA)."""
    return ssl.create_default_context()


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: Target, address: IPAddress, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=tls_context())
        self.pinned = address

    def connect(self) -> None:
        sock = _connect(self.pinned, self.port, self.timeout)  # type: ignore[arg-type]
        try:
            # SNI and certificate verification (hostname included) for the name in the URL. The handshake
            # runs once the TLS socket is ours, so the deadline can cut a receiver that drips it too.
            context: ssl.SSLContext = self._context  # type: ignore[attr-defined]
            self.sock = context.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
            self.sock.do_handshake()
        except BaseException:
            sock.close()
            if self.sock is not None:
                self.sock.close()
            raise


def _abort(connection: http.client.HTTPConnection) -> None:
    """Cut the exchange at the deadline: shutting the socket down wakes the thread blocked reading it."""
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: nothing to cut
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, also under TLS


def post(target: Target, addresses: list[IPAddress], *, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """POST ``body`` and return the HTTP status of the answer (a redirect is returned, never followed).

    Tries the checked ``addresses`` in order until one accepts the connection, all within ``timeout`` seconds
    from the first connection attempt to the answer's headers (the body is never read). Raises
    :class:`DeliveryError` when no HTTP answer came."""
    deadline = time.monotonic() + timeout
    failures: list[str] = []
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        connection = cls(target, address, remaining)
        watchdog = threading.Timer(remaining, _abort, args=(connection,))
        watchdog.daemon = True
        watchdog.start()
        try:
            try:
                connection.connect()
            except OSError as exc:
                failures.append(f"{address}: {_describe(exc)}")
                continue  # the next checked address, if any
            try:
                connection.request("POST", target.request_target, body=body, headers=dict(headers))
                return connection.getresponse().status
            except (OSError, http.client.HTTPException, ValueError) as exc:
                raise DeliveryError(f"{address}: {_describe(exc)}") from None
        finally:
            watchdog.cancel()
            connection.close()
    raise DeliveryError("; ".join(failures) or "timed out before connecting")


def _describe(exc: BaseException) -> str:
    text = exc.__class__.__name__
    detail = str(exc)
    return f"{text}: {detail}"[:150] if detail else text
