"""The address of the client behind a request, trusting X-Forwarded-For only from our own proxies.

Behind the documented deployment (a TLS-terminating proxy in front of gunicorn, docker/README.md) every
connection comes from the proxy, so ``REMOTE_ADDR`` is the proxy's address for everyone. The proxy appends
the address it accepted the connection from to ``X-Forwarded-For``. Anyone can send that header, though, so
it is believed only as far as our own proxies wrote it:

- ``TRUSTED_PROXIES`` lists the proxy hops in front of gunicorn, outermost first and the one that connects
  to gunicorn last (one entry per hop: an address or a CIDR network). Empty (the default): there is no
  proxy, and the client is ``REMOTE_ADDR`` whatever the headers say.
- The socket peer must be the last hop, and each hop appends exactly one entry, so only the right-most
  ``len(TRUSTED_PROXIES)`` entries of the header were written by our proxies; the client's own part of
  the header, further left, is never even parsed. python-ipware (``IpWare`` with ``proxy_list``) checks
  that this chain, ending with the peer, matches the hops in order and returns the entry before them.
- Anything else (a peer that is not our proxy, too few entries, an entry that is not an address) gives
  the peer's own address: a forged header never moves a request into someone else's lock-out bucket.

django-axes uses this (``AXES_CLIENT_IP_CALLABLE``) for the sign-in lock-out.
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from python_ipware import IpWare

_CHAIN = "X_TRUSTED_CHAIN"  # the one "header" the resolver reads: never one a client could send


@lru_cache(maxsize=4)
def _resolver(proxies: tuple[str, ...]) -> IpWare:
    try:
        return IpWare(precedence=(_CHAIN,), proxy_list=list(proxies))
    except ValueError as exc:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {exc}") from exc


def client_address(request: HttpRequest) -> str:
    """The client's address: the socket peer, or the address our trusted proxy chain recorded for it."""
    peer = str(request.META.get("REMOTE_ADDR", "")).strip()
    proxies = tuple(settings.TRUSTED_PROXIES)
    if not proxies:
        return peer
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
    written_by_proxies = forwarded.split(",")[-len(proxies) :] if forwarded.strip() else []
    chain = ",".join([*written_by_proxies, peer])
    address, trusted = _resolver(proxies).get_client_ip({_CHAIN: chain}, strict=True)
    return str(address) if address is not None and trusted else peer
