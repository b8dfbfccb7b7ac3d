"""underwriting.netguard: what counts as public, how the allow-list reads, and the one deadline per POST.

The attacks themselves (internal URLs saved or delivered, rebinding, redirects, the port-scan oracle) are in
tests/security/test_attack_webhooks.py; these are the guard's own contracts.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator

import pytest

from underwriting import netguard


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "203.0.114.1", "2606:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8",
     "64:ff9b::808:808", "2002:808:808::1"],
)  # fmt: skip
def test_public_addresses_pass(address: str) -> None:
    assert netguard.address_kind(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "host", "port", "request_target"),
    [
        ("https://Hooks.Example.COM/uw?x=1#frag", "hooks.example.com", 443, "/uw?x=1"),
        ("http://hooks.example.com:8080", "hooks.example.com", 8080, "/"),
        ("https://hooks.example.com./p", "hooks.example.com", 443, "/p"),
        ("https://bücher.example/é", "xn--bcher-kva.example", 443, "/%C3%A9"),
        ("https://[2606:4700::1111]:8443/h", "2606:4700::1111", 8443, "/h"),
    ],
)
def test_urls_are_read_as_a_resolver_and_a_server_would(url: str, host: str, port: int, request_target: str) -> None:
    target = netguard.parse_url(url)
    assert (target.host, target.port, target.request_target) == (host, port, request_target)


def test_the_allow_list_reads_names_and_networks_and_refuses_nonsense() -> None:
    allow = netguard.AllowList.parse(["Hooks.OnPrem.example.", " 10.20.0.5 ", "fd00:1::/64", "[fd00:2::1]", ""])
    assert allow.names == frozenset({"hooks.onprem.example"})
    assert allow.permits("hooks.onprem.example", ipaddress.ip_address("192.168.7.7"))
    assert allow.permits("x.example", ipaddress.ip_address("10.20.0.5"))
    assert allow.permits("x.example", ipaddress.ip_address("::ffff:10.20.0.5"))  # the same address, mapped
    assert allow.permits("x.example", ipaddress.ip_address("fd00:1::9"))
    assert not allow.permits("x.example", ipaddress.ip_address("10.20.0.6"))
    assert not allow.permits("hooks.onprem.example", ipaddress.ip_address("0.0.0.0"))
    with pytest.raises(ValueError, match="neither a host name nor a network"):
        netguard.AllowList.parse(["http://hooks.onprem.example/"])


@pytest.fixture
def dripping_server() -> Iterator[int]:
    """Accepts, then sends a complete 204 answer one byte every 0.2 s (about 30 s in all): each byte comes well
    within a read timeout, so only a deadline for the whole exchange stops the client from waiting it out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            for byte in b"HTTP/1.1 204 No Content\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n":
                if stop.wait(0.2):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    server.close()
    thread.join(timeout=5)


def test_one_deadline_covers_the_whole_exchange(dripping_server: int) -> None:
    target = netguard.parse_url(f"http://127.0.0.1:{dripping_server}/h")
    with pytest.raises(netguard.DeliveryError):  # without the deadline: 204, after the whole drip
        netguard.post(target, [ipaddress.ip_address("127.0.0.1")], body=b"{}", headers={}, timeout=1.0)
