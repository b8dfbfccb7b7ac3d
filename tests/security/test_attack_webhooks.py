"""Attacks on webhooks: an insurer's endpoint URL aimed at the bureau's own network (server-side request
forgery), the delivery log used as a port scanner, DNS rebinding between the check and the connection,
redirects to internal services, and signing secrets read from the database or from a page seen later.

Every test performs the attack with real sockets: receivers listen on loopback (tests/webhook_receiver.py)
and a substituted system resolver (``socket.getaddrinfo``) answers for the attacker's names, changing its
answer between look-ups where the attack needs it. ``127.0.0.1`` is an allowed on-premise receiver in the
test settings (as the other webhook tests need); tests that attack loopback itself empty the allow-list.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.contrib.auth.models import User
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import translation
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEntry
from tenants.models import Insurer, InsurerUser
from tests.factories import InsurerFactory
from tests.portal.conftest import _portal_settings, member, signed_in  # noqa: F401 - an autouse fixture
from tests.staff import otp_login
from tests.webhook_receiver import Receiver, start_receiver
from underwriting import netguard
from underwriting.errors import UnderwritingError
from underwriting.models import RequestStatus, UnderwritingRequest, WebhookDelivery, WebhookEndpoint
from underwriting.services.webhooks import (
    SIGNATURE_HEADER,
    verify_signature,
    webhook_deliver,
    webhook_endpoint_create,
    webhooks_enqueue_for_request,
)
from underwriting.webhook_secrets import seal, unseal

pytestmark = pytest.mark.django_db

PUBLIC = "93.184.215.14"  # a public address; the tests never connect to it
NEUTRAL = "No HTTP answer"


# --- fixtures ----------------------------------------------------------------------------------------------


class FakeDNS:
    """The system resolver, answering for the attacker's names. Each name has a list of answers, one per
    look-up, the last one repeating; an empty answer is "no such name". Other names resolve as usual."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
            name = host.decode() if isinstance(host, bytes) else str(host)
            if name not in self.answers:
                if name.endswith((".test", ".invalid")):
                    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
                return real(host, port, family, type, proto, flags)
            self.lookups.append(name)
            queue = self.answers[name]
            addresses = queue.pop(0) if len(queue) > 1 else queue[0]
            if not addresses:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, int(port or 0), 0, 0))
                if ":" in a
                else (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, int(port or 0)))
                for a in addresses
            ]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    def answer(self, name: str, *answers: list[str]) -> None:
        self.answers[name] = [list(a) for a in answers]


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    """The outcomes below are compared with their English wording."""
    with translation.override("en"):
        yield


@pytest.fixture
def company(db: None) -> Insurer:
    return InsurerFactory(slug="ping-life", name="Ping Life")  # type: ignore[no-any-return]


def portal_admin_of(company: Insurer, username: str) -> Client:
    """A portal admin of ``company``, signed in with both factors."""
    membership = member(company, username, InsurerUser.Role.ADMIN)
    TOTPDevice.objects.create(user=membership.user, name="app", confirmed=True)  # portal admins use two factors
    return signed_in(membership.user)


@pytest.fixture
def portal_admin(company: Insurer) -> Client:
    return portal_admin_of(company, "admin-ping")


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch, settings: Any) -> FakeDNS:
    # The attacker's "public" names are served by plain-http receivers on this machine: these tests are
    # about addresses, so the https requirement is lifted for them (tested on its own below).
    settings.WEBHOOK_REQUIRE_HTTPS = False
    return FakeDNS(monkeypatch)


@pytest.fixture
def no_allow_list(settings: Any) -> None:
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = []


@pytest.fixture
def receiver_v6() -> Iterator[Receiver]:
    receiver = start_receiver("::1")
    yield receiver
    receiver.stop()


def completed_request(company: Insurer, reference: str = "APP-1") -> UnderwritingRequest:
    return UnderwritingRequest.objects.create(
        insurer=company, reference=reference, subject_key="k" * 64, resident_id_masked="370214********123X",
        manual_slug="charlson-acci", as_of="2026-11-23", status=RequestStatus.COMPLETED, tier_code="B",
        tier_label="Standard", decision="accept",
    )  # fmt: skip


def legacy_endpoint(company: Insurer, url: str, secret: str = "whsec_legacy") -> WebhookEndpoint:
    """An endpoint saved without today's checks (before them, or before the bureau narrowed its list)."""
    return WebhookEndpoint.objects.create(insurer=company, url=url, secret_encrypted=seal(secret))


def deliver_once(endpoint: WebhookEndpoint, company: Insurer) -> WebhookDelivery:
    request = completed_request(company, reference=f"APP-{endpoint.pk}")
    [delivery_id] = [
        d for d in webhooks_enqueue_for_request(request_id=request.pk)
        if WebhookDelivery.objects.get(pk=d).endpoint_id == endpoint.pk
    ]  # fmt: skip
    webhook_deliver(delivery_id=delivery_id)
    return WebhookDelivery.objects.get(pk=delivery_id)


def staff_client() -> Client:
    user = User.objects.create_superuser("hook-officer", "officer@bureau.example", "officer-password-1")
    return otp_login(Client(headers={"accept-language": "en"}), user)


# --- 1. internal URLs are refused when saved ----------------------------------------------------------------

# {port} is a live receiver on 127.0.0.1 (or ::1 for the IPv6 ones): a successful attack would reach it.
HOSTILE_URLS = [
    "http://127.0.0.1:{port}/hooks",
    "http://127.0.0.2:{port}/hooks",
    "http://[::1]:{port6}/hooks",
    "http://localhost:{port}/hooks",
    "http://LOCALHOST.:{port}/hooks",
    "http://rebind.attacker.test:{port}/hooks",  # a name the attacker points at 127.0.0.1
    "http://v6.attacker.test:{port6}/hooks",  # ... and at ::1
    "http://mixed.attacker.test:{port}/hooks",  # a public address and a private one
    "http://metadata.attacker.test/latest/meta-data/",  # 169.254.169.254
    "http://nowhere.invalid/hooks",  # does not resolve: cannot be checked
    "http://10.0.0.5/hooks",
    "http://172.16.0.1/hooks",
    "http://192.168.1.1/hooks",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://100.64.0.1/hooks",
    "http://0.0.0.0:{port}/hooks",
    "http://[::]:{port6}/hooks",
    "http://224.0.0.1/hooks",
    "http://255.255.255.255/hooks",
    "http://240.0.0.1/hooks",
    "http://198.18.0.1/hooks",
    "http://192.0.2.1/hooks",
    "http://[::ffff:127.0.0.1]:{port}/hooks",
    "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
    "http://[::127.0.0.1]:{port}/hooks",
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # NAT64 of the metadata address
    "http://[64:ff9b:1::a00:1]/hooks",
    "http://[2002:7f00:1::1]/hooks",  # 6to4 of 127.0.0.1
    "http://[2002:a00:5::1]/hooks",  # 6to4 of 10.0.0.5
    "http://[2001:0:4136:e378:8000:63bf:f5ff:fffa]/hooks",  # Teredo, client 10.0.0.5
    "http://[fe80::1]/hooks",
    "http://[fe80::1%25lo]:{port6}/hooks",
    "http://[fc00::1]/hooks",
    "http://[fd12:3456::1]/hooks",
    "http://[fec0::1]/hooks",
    "http://[ff02::1]/hooks",
    "http://[2001:db8::1]/hooks",
    "http://2130706433:{port}/hooks",  # 127.0.0.1 in decimal
    "http://0177.0.0.1:{port}/hooks",  # ... in octal
    "http://0x7f.0.0.1:{port}/hooks",  # ... in hex
    "http://0x7f000001:{port}/hooks",
    "http://017700000001:{port}/hooks",
    "http://127.1:{port}/hooks",
    "http://127.000.000.001:{port}/hooks",
    "http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11:{port}/hooks",  # full-width digits and dots
    "http://127\u30020\u30020\u30021:{port}/hooks",  # ideographic full stops
    "http://hooks.example.com@127.0.0.1:{port}/hooks",  # userinfo
    "https://user:password@hooks.example.com/hooks",
    "http://hooks.example.com\\@127.0.0.1:{port}/hooks",
    "http://127.0.0.1:{port}/hooks\r\nX-Injected: 1",
    "ftp://hooks.example.com/hooks",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
    "dict://127.0.0.1:11211/stats",
    "javascript:alert(1)",
    "http://hooks.example.com:0/hooks",
    "http://hooks.example.com:65536/hooks",
]


@pytest.fixture
def attacker_names(dns: FakeDNS) -> FakeDNS:
    dns.answer("rebind.attacker.test", ["127.0.0.1"])
    dns.answer("v6.attacker.test", ["::1"])
    dns.answer("mixed.attacker.test", [PUBLIC, "10.0.0.7"])
    dns.answer("metadata.attacker.test", ["169.254.169.254"])
    return dns


@pytest.mark.parametrize("template", HOSTILE_URLS)
def test_saving_an_internal_url_is_refused(
    template: str, company: Insurer, receiver: Receiver, receiver_v6: Receiver, attacker_names: FakeDNS,
    no_allow_list: None,
) -> None:  # fmt: skip
    url = template.format(port=receiver.port, port6=receiver_v6.port)
    with pytest.raises(UnderwritingError) as refused:
        webhook_endpoint_create(insurer_id=company.pk, url=url)
    assert refused.value.code == "invalid_input"
    assert refused.value.fields["url"]
    assert not WebhookEndpoint.objects.exists()
    assert receiver.hits == receiver_v6.hits == 0


def test_internal_names_and_missing_names_get_one_answer(
    company: Insurer,
    attacker_names: FakeDNS,
    no_allow_list: None,
) -> None:
    """Otherwise saving would tell an insurer which names exist in the bureau's own DNS."""
    messages = set()
    for url in ["http://rebind.attacker.test/", "http://nowhere.invalid/", "http://mixed.attacker.test/",
                "http://10.0.0.5/", "http://localhost/"]:  # fmt: skip
        with pytest.raises(UnderwritingError) as refused:
            webhook_endpoint_create(insurer_id=company.pk, url=url)
        messages.add(refused.value.message)
    assert len(messages) == 1, messages


def test_the_portal_form_refuses_internal_urls(
    portal_admin: Client, receiver: Receiver, receiver_v6: Receiver, attacker_names: FakeDNS,
    no_allow_list: None,
) -> None:  # fmt: skip
    for url in [receiver.url, receiver_v6.url, f"http://localhost:{receiver.port}/hooks",
                f"http://rebind.attacker.test:{receiver.port}/hooks", "http://169.254.169.254/latest/meta-data/",
                f"http://2130706433:{receiver.port}/hooks", "http://[::ffff:7f00:1]/hooks"]:  # fmt: skip
        page = portal_admin.post("/portal/admin/webhooks/", {"url": url}, HTTP_ACCEPT_LANGUAGE="en")
        assert page.status_code == 200, url
        assert 'aria-invalid="true"' in page.content.decode(), url
    assert not WebhookEndpoint.objects.exists()
    assert receiver.hits == receiver_v6.hits == 0


def test_the_bureau_admin_refuses_internal_urls(
    company: Insurer,
    receiver: Receiver,
    attacker_names: FakeDNS,
    no_allow_list: None,
) -> None:
    client = staff_client()
    page = client.post(
        "/admin/underwriting/webhookendpoint/add/", {"insurer": company.pk, "url": receiver.url, "is_active": "on"}
    )
    assert page.status_code == 200
    assert "errorlist" in page.content.decode()
    assert not WebhookEndpoint.objects.exists()

    attacker_names.answer("hooks.insurer.test", [PUBLIC])
    endpoint, _ = webhook_endpoint_create(insurer_id=company.pk, url="https://hooks.insurer.test/uw")
    change = f"/admin/underwriting/webhookendpoint/{endpoint.pk}/change/"
    page = client.post(change, {"url": f"http://rebind.attacker.test:{receiver.port}/hooks", "is_active": "on"})
    assert page.status_code == 200
    assert "errorlist" in page.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.url == "https://hooks.insurer.test/uw"
    # Pausing an endpoint needs no look-up, and the URL is not checked again when it does not change.
    attacker_names.answer("hooks.insurer.test", [])
    assert client.post(change, {"url": endpoint.url}).status_code == 302
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert receiver.hits == 0


# --- 2. ... and again at delivery, on the address connected to --------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/hooks", "http://[::1]:{port6}/hooks", "http://localhost:{port}/hooks",
        "http://[::ffff:127.0.0.1]:{port}/hooks", "http://2130706433:{port}/hooks", "http://0.0.0.0:{port}/hooks",
        "http://10.0.0.5/hooks", "http://169.254.169.254/latest/meta-data/", "http://rebind.attacker.test:{port}/",
    ],
)  # fmt: skip
def test_delivery_refuses_internal_urls_saved_without_the_check(
    template: str, company: Insurer, receiver: Receiver, receiver_v6: Receiver, attacker_names: FakeDNS,
    no_allow_list: None,
) -> None:  # fmt: skip
    endpoint = legacy_endpoint(company, template.format(port=receiver.port, port6=receiver_v6.port))
    delivery = deliver_once(endpoint, company)
    assert receiver.hits == receiver_v6.hits == 0
    assert delivery.status == WebhookDelivery.Status.PENDING  # retried like any failure
    assert delivery.last_status_code is None
    assert delivery.last_error.startswith("refused")
    assert delivery.outcome_for_insurer() == NEUTRAL


def test_dns_rebinding_after_saving_is_refused_at_delivery(
    company: Insurer,
    receiver: Receiver,
    dns: FakeDNS,
    no_allow_list: None,
) -> None:
    dns.answer("hooks.attacker.test", [PUBLIC])
    endpoint, _ = webhook_endpoint_create(insurer_id=company.pk, url=f"http://hooks.attacker.test:{receiver.port}/h")
    dns.answer("hooks.attacker.test", ["127.0.0.1"])  # the attacker's DNS now points at the bureau
    delivery = deliver_once(endpoint, company)
    assert receiver.hits == 0
    assert (delivery.last_status_code, delivery.outcome_for_insurer()) == (None, NEUTRAL)
    assert "127.0.0.1 is loopback" in delivery.last_error

    dns.answer("hooks.attacker.test", [PUBLIC, "127.0.0.1"])  # one bad address among good ones is enough
    assert "127.0.0.1 is loopback" in deliver_once(endpoint, company).last_error
    assert receiver.hits == 0


def test_the_connection_goes_to_the_address_that_was_checked(
    company: Insurer,
    receiver: Receiver,
    dns: FakeDNS,
) -> None:
    """DNS rebinding between the check and the connection: the attacker's name answers an allowed address
    to every look-up but the next, where it answers an internal service on the same port."""
    internal = start_receiver("127.0.0.2", port=receiver.port)  # not allowed: only 127.0.0.1 is
    try:
        dns.answer("flip.attacker.test", ["127.0.0.1"], ["127.0.0.1"], ["127.0.0.2"])
        endpoint, secret = webhook_endpoint_create(
            insurer_id=company.pk, url=f"http://flip.attacker.test:{receiver.port}/hooks"
        )
        delivery = deliver_once(endpoint, company)
        assert delivery.status == WebhookDelivery.Status.DELIVERED
        assert internal.hits == 0
        assert len(receiver.received) == 1
        assert dns.lookups == ["flip.attacker.test", "flip.attacker.test"]  # saving, delivering: once each
        assert receiver.received[0].headers["Host"] == f"flip.attacker.test:{receiver.port}"
        assert verify_signature(secret, receiver.received[0].headers[SIGNATURE_HEADER], receiver.received[0].body)
    finally:
        internal.stop()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(
    status: int, company: Insurer, receiver: Receiver, receiver_v6: Receiver, portal_admin: Client
) -> None:
    """A receiver the bureau allows redirects to an internal service: the signed POST must not follow."""
    receiver.redirect_to, receiver.redirect_status = f"{receiver_v6.url}?from=redirect", status
    endpoint, _ = webhook_endpoint_create(insurer_id=company.pk, url=receiver.url)
    delivery = deliver_once(endpoint, company)
    assert receiver.hits == 1
    assert receiver_v6.hits == 0
    assert delivery.status == WebhookDelivery.Status.PENDING  # a failed attempt, retried
    assert delivery.last_status_code == status
    with translation.override("en"):
        assert "redirects are not followed" in delivery.outcome_for_insurer()
    page = portal_admin.post(f"/portal/admin/webhooks/{endpoint.pk}/test/", follow=True, HTTP_ACCEPT_LANGUAGE="en")
    assert f"Test event not delivered: HTTP {status} (redirects are not followed)." in page.content.decode()
    assert receiver_v6.hits == 0


# --- 3. the delivery log is no port scanner ---------------------------------------------------------------


def test_failed_deliveries_look_the_same_to_the_insurer(
    company: Insurer,
    receiver: Receiver,
    dns: FakeDNS,
    portal_admin: Client,
    settings: Any,
) -> None:
    """An insurer points endpoints at a closed port, a port that never answers, a port that does not speak
    TLS, an internal address and a name that stops resolving, and reads what the portal says of each."""
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections in the kernel, never answers
    dns.answer("internal.attacker.test", [PUBLIC], ["10.0.0.9"])
    dns.answer("gone.attacker.test", [PUBLIC], [])
    urls = {
        "closed": f"http://127.0.0.1:{closed_port}/hooks",
        "silent": f"http://127.0.0.1:{silent.getsockname()[1]}/hooks",
        "not tls": f"https://127.0.0.1:{receiver.port}/hooks",
        "internal": "http://internal.attacker.test/hooks",
        "gone": "http://gone.attacker.test/hooks",
    }
    try:
        endpoints = {kind: webhook_endpoint_create(insurer_id=company.pk, url=url)[0] for kind, url in urls.items()}
        seen, details, messages = set(), set(), set()
        for kind, endpoint in endpoints.items():
            delivery = deliver_once(endpoint, company)
            with translation.override("en"):
                outcome = delivery.outcome_for_insurer()
            seen.add((delivery.status, delivery.attempts, delivery.last_status_code, outcome,
                      (delivery.next_attempt_at - delivery.created_at).total_seconds() // 5))  # fmt: skip
            details.add(delivery.last_error)
            page = portal_admin.get(f"/portal/admin/webhooks/{endpoint.pk}/", HTTP_ACCEPT_LANGUAGE="en").content
            assert NEUTRAL in page.decode()
            assert delivery.last_error.encode() not in page
            for word in (b"refused", b"Refused", b"timed out", b"timeout", b"SSL", b"Error", b"10.0.0.9", b"resolve"):
                assert word not in page, (kind, word)
            test = portal_admin.post(
                f"/portal/admin/webhooks/{endpoint.pk}/test/", follow=True, HTTP_ACCEPT_LANGUAGE="en"
            )
            messages.add(re.findall(r"Test event not delivered: [^<]*", test.content.decode())[0])
    finally:
        silent.close()
    assert len(seen) == 1, seen  # one outcome, one retry schedule, whatever happened
    assert messages == {f"Test event not delivered: {NEUTRAL}."}
    assert len(details) == len(urls)  # the bureau's staff still see what happened (admin: last error)
    assert receiver.hits == 0


# --- 4. on-premise receivers the bureau allows ------------------------------------------------------------


def test_an_allowed_on_premise_receiver_gets_its_events(
    company: Insurer,
    receiver: Receiver,
    dns: FakeDNS,
    settings: Any,
) -> None:
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = ["hooks.onprem.test", "10.20.0.0/30"]
    dns.answer("hooks.onprem.test", ["127.0.0.1"])
    dns.answer("other.onprem.test", ["127.0.0.1"])  # same address, another name: not allowed
    endpoint, secret = webhook_endpoint_create(insurer_id=company.pk, url=f"http://hooks.onprem.test:{receiver.port}/h")
    delivery = deliver_once(endpoint, company)
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    [event] = receiver.received
    assert event.headers["Host"] == f"hooks.onprem.test:{receiver.port}"
    assert verify_signature(secret, event.headers[SIGNATURE_HEADER], event.body)
    assert json.loads(event.body)["data"]["result"]["tier"] == "B"

    assert webhook_endpoint_create(insurer_id=company.pk, url="http://10.20.0.2/h")[0].pk  # a listed network
    for url in [f"http://other.onprem.test:{receiver.port}/h", "http://10.20.0.9/h", f"{receiver.url}"]:
        with pytest.raises(UnderwritingError):
            webhook_endpoint_create(insurer_id=company.pk, url=url)


def test_allowing_everything_still_refuses_this_machine_and_multicast(company: Insurer, settings: Any) -> None:
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = ["0.0.0.0/0", "::/0"]
    for url in [
        "http://0.0.0.0/h",
        "http://[::]/h",
        "http://224.0.0.1/h",
        "http://[::ffff:0.0.0.0]/h",
        "http://[ff02::1]/h",
    ]:
        with pytest.raises(UnderwritingError):
            webhook_endpoint_create(insurer_id=company.pk, url=url)


def _tls_for(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for ``name`` from a fresh CA, and a client context trusting it."""
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Webhook test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    return server, ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))


def test_https_delivery_pins_the_address_and_verifies_the_name(
    company: Insurer,
    dns: FakeDNS,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server_tls, client_tls = _tls_for(tmp_path, "hooks.insurer.test")
    monkeypatch.setattr(netguard, "tls_context", lambda: client_tls)
    tls_receiver = start_receiver(tls=server_tls)
    try:
        dns.answer("hooks.insurer.test", ["127.0.0.1"])
        dns.answer("impostor.insurer.test", ["127.0.0.1"])
        endpoint, _ = webhook_endpoint_create(
            insurer_id=company.pk, url=f"https://hooks.insurer.test:{tls_receiver.port}/h"
        )
        assert deliver_once(endpoint, company).status == WebhookDelivery.Status.DELIVERED
        [event] = tls_receiver.received
        assert event.server_name == "hooks.insurer.test"  # SNI: the name, although the address was pinned
        assert event.headers["Host"] == f"hooks.insurer.test:{tls_receiver.port}"
        # A name whose certificate is not the receiver's: verification is for the name in the URL.
        impostor, _ = webhook_endpoint_create(
            insurer_id=company.pk, url=f"https://impostor.insurer.test:{tls_receiver.port}/h"
        )
        delivery = deliver_once(impostor, company)
        assert (delivery.last_status_code, delivery.outcome_for_insurer()) == (None, NEUTRAL)
        assert "certificate" in delivery.last_error.lower() or "SSL" in delivery.last_error
        assert len(tls_receiver.received) == 1
    finally:
        tls_receiver.stop()


# --- 5. signing secrets: encrypted at rest, shown once ----------------------------------------------------


def _row_text(endpoint_id: int) -> str:
    table = connection.ops.quote_name(WebhookEndpoint._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id = %s", [endpoint_id])  # the model's own table
        return " ".join(str(value) for value in cursor.fetchone())


def test_a_database_reader_finds_no_signing_secret(
    company: Insurer,
    receiver: Receiver,
    settings: Any,
) -> None:
    endpoint, secret = webhook_endpoint_create(insurer_id=company.pk, url=receiver.url)
    row = _row_text(endpoint.pk)
    assert secret not in row
    assert "whsec_" not in row
    assert secret.removeprefix("whsec_") not in base64.urlsafe_b64decode(endpoint.secret_encrypted + "==").decode(
        "latin-1"
    )
    # Without the key, the ciphertext opens to nothing, and nothing goes out unsigned or mis-signed.
    settings.SECRET_KEY = "another-deployment-secret-key-0123456789"
    delivery = deliver_once(endpoint, company)
    assert receiver.hits == 0
    assert "unreadable" in delivery.last_error
    assert delivery.outcome_for_insurer() == NEUTRAL


def _shown_secret(html: str) -> str | None:
    found = re.findall(r"whsec_[A-Za-z0-9_-]{20,}", html)
    return found[0] if found else None


def test_the_portal_shows_a_secret_once(
    portal_admin: Client,
    company: Insurer,
    receiver: Receiver,
) -> None:
    response = portal_admin.post("/portal/admin/webhooks/", {"url": receiver.url})
    endpoint = WebhookEndpoint.objects.get(insurer=company)
    stored = dict(portal_admin.session.items())  # what the session store holds across the redirect
    page = portal_admin.get(response["Location"]).content.decode()
    secret = _shown_secret(page)
    assert secret is not None
    assert secret == unseal(endpoint.secret_encrypted)
    assert secret not in json.dumps(stored, default=str)  # it crossed the redirect encrypted
    for again in (f"/portal/admin/webhooks/{endpoint.pk}/", "/portal/admin/webhooks/"):
        assert _shown_secret(portal_admin.get(again).content.decode()) is None  # the second visit shows nothing

    portal_admin.post(f"/portal/admin/webhooks/{endpoint.pk}/test/")
    assert verify_signature(secret, receiver.received[-1].headers[SIGNATURE_HEADER], receiver.received[-1].body)

    rotated = portal_admin.post(f"/portal/admin/webhooks/{endpoint.pk}/rotate/", follow=True).content.decode()
    new_secret = _shown_secret(rotated)
    assert new_secret is not None
    assert new_secret != secret
    assert _shown_secret(portal_admin.get(f"/portal/admin/webhooks/{endpoint.pk}/").content.decode()) is None
    portal_admin.post(f"/portal/admin/webhooks/{endpoint.pk}/test/")
    event = receiver.received[-1]
    assert verify_signature(new_secret, event.headers[SIGNATURE_HEADER], event.body)
    assert not verify_signature(secret, event.headers[SIGNATURE_HEADER], event.body)
    actions = list(
        AuditEntry.objects.filter(target_type="webhook_endpoint").order_by("id").values_list("action", flat=True)
    )
    assert actions == ["webhook.endpoint_create", "webhook.secret_rotate"]


def test_another_insurer_cannot_rotate_a_secret(
    company: Insurer,
    receiver: Receiver,
    settings: Any,
) -> None:
    endpoint, secret = webhook_endpoint_create(insurer_id=company.pk, url=receiver.url)
    client = portal_admin_of(Insurer.objects.create(slug="rival-life", name="Rival Life"), "rival-admin")
    assert client.post(f"/portal/admin/webhooks/{endpoint.pk}/rotate/").status_code == 404
    endpoint.refresh_from_db()
    assert unseal(endpoint.secret_encrypted) == secret


def test_the_bureau_admin_shows_a_secret_once(company: Insurer, receiver: Receiver) -> None:
    client = staff_client()
    created = client.post(
        "/admin/underwriting/webhookendpoint/add/", {"insurer": company.pk, "url": receiver.url, "is_active": "on"}
    )
    assert created.status_code == 200
    assert "no-store" in created["Cache-Control"]
    endpoint = WebhookEndpoint.objects.get()
    secret = _shown_secret(created.content.decode())
    assert secret is not None
    assert secret == unseal(endpoint.secret_encrypted)
    change = client.get(f"/admin/underwriting/webhookendpoint/{endpoint.pk}/change/").content.decode()
    assert _shown_secret(change) is None
    assert _shown_secret(client.get("/admin/underwriting/webhookendpoint/").content.decode()) is None
    rotate = f"/admin/underwriting/webhookendpoint/{endpoint.pk}/rotate-secret/"
    assert _shown_secret(client.get(rotate).content.decode()) is None  # asks first
    assert unseal(WebhookEndpoint.objects.get().secret_encrypted) == secret
    rotated = client.post(rotate)
    new_secret = _shown_secret(rotated.content.decode())
    assert new_secret is not None
    assert new_secret not in (secret, None)
    assert "no-store" in rotated["Cache-Control"]
    assert unseal(WebhookEndpoint.objects.get().secret_encrypted) == new_secret
    assert (
        _shown_secret(client.get(f"/admin/underwriting/webhookendpoint/{endpoint.pk}/change/").content.decode()) is None
    )
    assert AuditEntry.objects.filter(action="webhook.secret_rotate", actor="hook-officer").exists()


@pytest.mark.django_db(transaction=True)
def test_existing_clear_secrets_are_encrypted_by_the_migration(company: Insurer, receiver: Receiver) -> None:
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes("underwriting")
    [ours] = [key for key in executor.loader.disk_migrations if key[1].endswith("_webhook_secrets_encrypted")]
    executor.migrate(executor.loader.get_migration(*ours).dependencies)  # back to just before the encryption
    legacy = "whsec_legacy-secret-an-insurer-already-configured"
    table = connection.ops.quote_name(WebhookEndpoint._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (insurer_id, url, secret, is_active, created_at) VALUES (%s, %s, %s, %s, %s)",
            [company.pk, receiver.url, legacy, True, datetime.now(UTC)],
        )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(leaves)
    endpoint = WebhookEndpoint.objects.get()
    assert legacy not in _row_text(endpoint.pk)
    assert unseal(endpoint.secret_encrypted) == legacy
    assert deliver_once(endpoint, company).status == WebhookDelivery.Status.DELIVERED
    event = receiver.received[0]
    assert verify_signature(legacy, event.headers[SIGNATURE_HEADER], event.body)  # receivers change nothing


def test_results_reach_public_receivers_over_https_only(
    company: Insurer, receiver: Receiver, dns: FakeDNS, no_allow_list: None, settings: Any
) -> None:
    settings.WEBHOOK_REQUIRE_HTTPS = True
    dns.answer("hooks.insurer.test", [PUBLIC])
    with pytest.raises(UnderwritingError) as refused:
        webhook_endpoint_create(insurer_id=company.pk, url="http://hooks.insurer.test/h")
    assert "https://" in refused.value.fields["url"][0]
    webhook_endpoint_create(insurer_id=company.pk, url="https://hooks.insurer.test/h")  # https is fine

    # Saved before the rule (or while it was off): refused at delivery, nothing sent in clear.
    settings.WEBHOOK_REQUIRE_HTTPS = False
    endpoint, _ = webhook_endpoint_create(insurer_id=company.pk, url=f"http://hooks.insurer.test:{receiver.port}/h")
    settings.WEBHOOK_REQUIRE_HTTPS = True
    delivery = deliver_once(endpoint, company)
    assert receiver.hits == 0
    assert delivery.outcome_for_insurer() == NEUTRAL
    assert "plain http" in delivery.last_error

    # An on-premise receiver the bureau allowed may still use plain http.
    settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]
    on_premise, _ = webhook_endpoint_create(insurer_id=company.pk, url=f"http://127.0.0.1:{receiver.port}/h")
    assert deliver_once(on_premise, company).last_status_code == 204
    assert receiver.hits == 1
