"""Key hygiene in the custodian: a retired key's factors leave memory, and every sealed key file can be
re-sealed under a new key-encryption key (``kek_rotate``, ``manage.py rotate_kek``)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import phe
import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from datadomain import custodian
from datadomain.errors import DomainError
from datadomain.models import CustodianKey
from securecompute import fast_encryptor, private
from securecompute.errors import WrongKekError
from securecompute.keys import generate_keypair, public_key_from_json

pytestmark = pytest.mark.django_db

KeyPair = tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]


@pytest.fixture(scope="module")
def key_pool() -> list[KeyPair]:
    return [generate_keypair(2048) for _ in range(3)]


@pytest.fixture(autouse=True)
def custodian_env(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch, key_pool: list[KeyPair]
) -> Iterator[bytes]:
    """A key directory of the test's own, a random current KEK, and key generation from a pool (speed)."""
    settings.CUSTODIAN_KEY_DIR = tmp_path / "keys"
    kek = secrets.token_bytes(32)
    settings.CUSTODIAN_KEK = kek.hex()
    pool = iter(key_pool)
    monkeypatch.setattr(custodian, "generate_keypair", lambda bits: next(pool))
    custodian._private_key.cache_clear()
    yield kek
    custodian._private_key.cache_clear()


def modulus_of(private_key: phe.PaillierPrivateKey) -> int:
    return int(private_key.public_key.n)


def use(fingerprint: str) -> phe.PaillierPrivateKey:
    """Load a key in the custodian and decrypt with it, as answering a query does."""
    private_key = custodian._private_key(fingerprint)
    assert private.decrypt_int(private_key, fast_encryptor(private_key.public_key).encrypt(7)) == 7
    return private_key


# --- retired keys leave memory ---------------------------------------------------------------------------


def test_retiring_a_key_drops_its_factors_from_memory() -> None:
    old = custodian.keypair_create(bits=2048)
    new = custodian.keypair_create(bits=2048)
    n = modulus_of(use(old.key_id))
    use(new.key_id)
    assert old.key_id in custodian._private_key
    assert n in private._crt_keys
    custodian.key_retire(key_id=old.key_id)
    assert old.key_id not in custodian._private_key
    assert n not in private._crt_keys
    assert new.key_id in custodian._private_key  # the active key stays


def test_a_retirement_in_another_process_reaches_this_one() -> None:
    """Another process retires the key and deletes its sealed file; this one drops the key on next use."""
    old = custodian.keypair_create(bits=2048)
    custodian.keypair_create(bits=2048)
    n = modulus_of(use(old.key_id))
    CustodianKey.objects.filter(pk=old.pk).update(status=CustodianKey.Status.RETIRED)
    Path(old.sealed_path).unlink()
    with pytest.raises(DomainError, match="no usable key"):
        custodian._private_key(old.key_id)
    assert old.key_id not in custodian._private_key
    assert n not in private._crt_keys


def test_the_custodian_holds_a_bounded_number_of_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(custodian._private_key, "size", 1)
    old = custodian.keypair_create(bits=2048)
    new = custodian.keypair_create(bits=2048)
    n = modulus_of(use(old.key_id))
    use(new.key_id)
    assert old.key_id not in custodian._private_key
    assert n not in private._crt_keys


# --- KEK rotation -----------------------------------------------------------------------------------------


@pytest.fixture
def live_keys() -> list[CustodianKey]:
    """A retired key (no file), a retiring and an active one."""
    retired, retiring, active = (custodian.keypair_create(bits=2048) for _ in range(3))
    custodian.key_retire(key_id=retired.key_id)
    return [retiring, active]


def snapshot(keys: list[CustodianKey]) -> dict[str, tuple[bytes, int]]:
    return {key.key_id: (Path(key.sealed_path).read_bytes(), os.stat(key.sealed_path).st_mtime_ns) for key in keys}


def test_rotation_reseals_every_key_under_the_new_kek(
    custodian_env: bytes, live_keys: list[CustodianKey], settings: Any
) -> None:
    old_kek, new_kek = custodian_env, secrets.token_bytes(32)
    heard: list[tuple[str, str]] = []
    resealed = custodian.kek_rotate(
        old_kek=old_kek, new_kek=new_kek, actor="kit", progress=lambda key_id, what: heard.append((key_id, what))
    )
    assert resealed == 2
    assert heard == [(key.key_id, "re-sealed") for key in live_keys]
    for key in live_keys:
        assert oct(os.stat(key.sealed_path).st_mode & 0o777) == "0o600"
        private.load_sealed_private_key(key.sealed_path, new_kek)
        with pytest.raises(WrongKekError):
            private.load_sealed_private_key(key.sealed_path, old_kek)
    assert sorted(p.name for p in Path(settings.CUSTODIAN_KEY_DIR).iterdir()) == sorted(
        f"{key.key_id}.sealed" for key in live_keys
    )  # no temporary file left behind
    entry = AuditEntry.objects.get(action="custodian.kek_rotate")
    assert entry.actor == "kit"
    assert entry.detail == {"resealed": [key.key_id for key in live_keys], "skipped": [], "missing": []}
    assert old_kek.hex() not in str(entry.detail)
    assert new_kek.hex() not in str(entry.detail)
    settings.CUSTODIAN_KEK = new_kek.hex()  # the custodian restarted with the new KEK
    custodian._private_key.cache_clear()
    use(live_keys[0].key_id)


def test_running_the_rotation_again_changes_nothing(custodian_env: bytes, live_keys: list[CustodianKey]) -> None:
    new_kek = secrets.token_bytes(32)
    custodian.kek_rotate(old_kek=custodian_env, new_kek=new_kek, actor="kit")
    before = snapshot(live_keys)
    heard: list[str] = []
    again = custodian.kek_rotate(
        old_kek=custodian_env, new_kek=new_kek, actor="kit", progress=lambda key_id, what: heard.append(what)
    )
    assert again == 0
    assert heard == ["already sealed under the new KEK"] * 2
    assert snapshot(live_keys) == before


def test_a_wrong_old_kek_is_refused_and_no_file_changes(custodian_env: bytes, live_keys: list[CustodianKey]) -> None:
    new_kek = secrets.token_bytes(32)
    before = snapshot(live_keys)
    with pytest.raises(DomainError) as refused:
        custodian.kek_rotate(old_kek=secrets.token_bytes(32), new_kek=new_kek, actor="kit")
    assert refused.value.code == "wrong_old_kek"
    assert snapshot(live_keys) == before
    assert not AuditEntry.objects.filter(action="custodian.kek_rotate").exists()


def test_the_new_kek_must_differ_from_the_old(custodian_env: bytes, live_keys: list[CustodianKey]) -> None:
    with pytest.raises(DomainError, match="current one"):
        custodian.kek_rotate(old_kek=custodian_env, new_kek=custodian_env, actor="kit")


def test_a_rotation_cut_short_is_finished_by_running_it_again(
    custodian_env: bytes, live_keys: list[CustodianKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    new_kek = secrets.token_bytes(32)
    write = private.write_sealed_file
    writes: list[Path] = []

    def disk_full_on_second(path: Any, sealed: bytes) -> None:
        if writes:
            raise OSError(28, "No space left on device")
        writes.append(path)
        write(path, sealed)

    monkeypatch.setattr(private, "write_sealed_file", disk_full_on_second)
    with pytest.raises(OSError):
        custodian.kek_rotate(old_kek=custodian_env, new_kek=new_kek, actor="kit")
    first, second = live_keys
    private.load_sealed_private_key(first.sealed_path, new_kek)
    private.load_sealed_private_key(second.sealed_path, custodian_env)  # untouched, still whole
    monkeypatch.setattr(private, "write_sealed_file", write)
    assert custodian.kek_rotate(old_kek=custodian_env, new_kek=new_kek, actor="kit") == 1
    for key in live_keys:
        private.load_sealed_private_key(key.sealed_path, new_kek)


# --- the command ------------------------------------------------------------------------------------------


def test_rotate_kek_command_reads_the_new_kek_from_a_file(
    custodian_env: bytes, live_keys: list[CustodianKey], tmp_path: Path
) -> None:
    new_kek = secrets.token_bytes(32)
    kek_file = tmp_path / "new_kek"
    kek_file.write_text(new_kek.hex() + "\n")
    out = StringIO()
    call_command("rotate_kek", "--new-kek-file", str(kek_file), "--by", "kit", stdout=out)
    printed = out.getvalue()
    for key in live_keys:
        assert f"key {key.key_id}: re-sealed" in printed
        private.load_sealed_private_key(key.sealed_path, new_kek)
    assert "set CUSTODIAN_KEK" in printed
    assert "restart the custodian" in printed
    for kek in (custodian_env, new_kek):
        assert kek.hex() not in printed


def test_rotate_kek_command_reads_the_new_kek_from_the_environment(
    custodian_env: bytes, live_keys: list[CustodianKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    new_kek = secrets.token_bytes(32)
    monkeypatch.setenv("NEW_CUSTODIAN_KEK", new_kek.hex())
    out = StringIO()
    call_command("rotate_kek", stdout=out)
    assert "Re-sealed 2 key file(s)" in out.getvalue()
    assert new_kek.hex() not in out.getvalue()
    assert AuditEntry.objects.get(action="custodian.kek_rotate").actor == "manage.py rotate_kek"


def test_rotate_kek_command_refuses_a_missing_or_malformed_new_kek(
    live_keys: list[CustodianKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(live_keys)
    monkeypatch.delenv("NEW_CUSTODIAN_KEK", raising=False)
    with pytest.raises(CommandError, match="No new KEK"):
        call_command("rotate_kek", stdout=StringIO())
    monkeypatch.setenv("NEW_CUSTODIAN_KEK", "change-me")
    with pytest.raises(CommandError, match="32 random bytes") as refused:
        call_command("rotate_kek", stdout=StringIO())
    assert "change-me" not in str(refused.value)
    assert snapshot(live_keys) == before


def _worker(*queues: str) -> Any:
    """What ``worker_init`` is sent with: a worker whose app consumes ``queues``."""
    from types import SimpleNamespace

    return SimpleNamespace(app=SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from=queues))))


def test_domain_and_scoring_workers_build_the_encryption_tables_before_forking(monkeypatch: pytest.MonkeyPatch) -> None:
    from datadomain import tasks
    from securecompute import encryption

    monkeypatch.setattr(tasks.connections, "close_all", lambda: None)  # the test's own transaction stays open
    n = public_key_from_json(custodian.keypair_create(bits=2048).public_key_json).n
    for queues, built in ((("custodian",), False), (("domain",), True), (("scoring", "webhooks"), True)):
        encryption._cache.clear()
        tasks.encryptor_warm(sender=_worker(*queues))
        assert (n in encryption._cache) is built, queues


def test_a_worker_starts_without_an_active_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from datadomain import tasks

    monkeypatch.setattr(tasks.connections, "close_all", lambda: None)
    tasks.encryptor_warm(sender=_worker("domain"))  # no key yet: logged, not raised
