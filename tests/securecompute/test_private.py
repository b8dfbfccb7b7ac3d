from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import phe
import pytest

from securecompute import fast_encryptor
from securecompute.errors import (
    CorruptKeyFileError,
    InsecureKeyFileError,
    KekFormatError,
    KeyTooShortError,
    WrongKekError,
)
from securecompute.private import (
    _seal,
    decrypt_int,
    decrypt_vector,
    kek_from_env_value,
    kek_from_key_file,
    load_sealed_private_key,
    new_kek,
    seal_private_key,
    unseal_private_key,
    write_sealed_private_key,
)
from tests.securecompute.conftest import KeyPair

KEK = bytes(range(32))


@pytest.fixture
def sealed_path(tmp_path: Path, keys_2048: KeyPair) -> Path:
    path = tmp_path / "custodian.key"
    write_sealed_private_key(path, keys_2048[1], KEK)
    return path


def test_round_trip_with_mode_0600(sealed_path: Path, keys_2048: KeyPair) -> None:
    assert stat.S_IMODE(sealed_path.stat().st_mode) == 0o600
    loaded = load_sealed_private_key(sealed_path, KEK)
    assert loaded == keys_2048[1]
    assert loaded.public_key == keys_2048[0]
    assert loaded.decrypt(fast_encryptor(keys_2048[0]).encrypt(-17)) == -17


def test_the_file_never_holds_the_factors_in_clear(sealed_path: Path, keys_2048: KeyPair) -> None:
    content = sealed_path.read_text()
    assert format(keys_2048[1].p, "x") not in content
    assert str(keys_2048[1].p) not in content


def test_refuses_to_overwrite_unless_asked(sealed_path: Path, keys_2048: KeyPair, other_keys: KeyPair) -> None:
    with pytest.raises(FileExistsError):
        write_sealed_private_key(sealed_path, other_keys[1], KEK)
    write_sealed_private_key(sealed_path, other_keys[1], KEK, overwrite=True)
    assert load_sealed_private_key(sealed_path, KEK) == other_keys[1]
    assert [p.name for p in sealed_path.parent.iterdir()] == [sealed_path.name]


def test_wrong_kek_has_its_own_error(sealed_path: Path) -> None:
    with pytest.raises(WrongKekError, match="different KEK"):
        load_sealed_private_key(sealed_path, bytes(range(1, 33)))


def test_altered_ciphertext_is_corrupt_not_a_wrong_kek(sealed_path: Path) -> None:
    document = json.loads(sealed_path.read_text())
    ciphertext = bytearray(base64.b64decode(document["ciphertext"]))
    ciphertext[10] ^= 1
    document["ciphertext"] = base64.b64encode(bytes(ciphertext)).decode()
    sealed_path.write_text(json.dumps(document))
    with pytest.raises(CorruptKeyFileError, match="altered or damaged"):
        load_sealed_private_key(sealed_path, KEK)


def test_altered_header_fails_authentication(sealed_path: Path) -> None:
    document = json.loads(sealed_path.read_text())
    sealed_path.write_text(json.dumps({**document, "key_id": "0" * 16}))
    with pytest.raises(CorruptKeyFileError):
        load_sealed_private_key(sealed_path, KEK)


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"format": "other"}', b"\xff\xfe"])
def test_truncated_or_foreign_files_are_corrupt(sealed_path: Path, content: bytes) -> None:
    sealed_path.write_bytes(content)
    with pytest.raises(CorruptKeyFileError):
        load_sealed_private_key(sealed_path, KEK)


def test_truncated_sealed_key_is_corrupt(sealed_path: Path) -> None:
    sealed_path.write_bytes(sealed_path.read_bytes()[:-40])
    with pytest.raises(CorruptKeyFileError):
        load_sealed_private_key(sealed_path, KEK)


def test_too_short_keys_are_refused_when_sealing_and_loading(tmp_path: Path) -> None:
    _public_key, private_key = phe.generate_paillier_keypair(n_length=1024)
    with pytest.raises(KeyTooShortError):
        seal_private_key(private_key, KEK)
    # A file sealed by an older, laxer tool: the loader refuses it with the same clear error.
    with pytest.raises(KeyTooShortError, match="1024 bits"):
        unseal_private_key(_seal(private_key.p, private_key.q, KEK), KEK)


def test_a_key_file_readable_by_others_is_refused(sealed_path: Path) -> None:
    os.chmod(sealed_path, 0o644)
    with pytest.raises(InsecureKeyFileError, match="0644"):
        load_sealed_private_key(sealed_path, KEK)


def test_kek_spellings() -> None:
    assert kek_from_env_value(KEK.hex()) == KEK
    assert kek_from_env_value(f"  {KEK.hex().upper()}\n") == KEK
    assert kek_from_env_value(base64.b64encode(KEK).decode()) == KEK
    assert kek_from_env_value(base64.urlsafe_b64encode(KEK).decode().rstrip("=")) == KEK
    assert kek_from_key_file(KEK) == KEK
    assert kek_from_key_file(KEK.hex().encode() + b"\n") == KEK
    assert len(kek_from_env_value(new_kek())) == 32


@pytest.mark.parametrize("value", ["", "correct horse battery staple", "ab" * 31, "00" * 32, "zz" * 32])
def test_bad_kek_values_are_refused_with_guidance(value: str) -> None:
    with pytest.raises(KekFormatError):
        kek_from_env_value(value)


def test_bad_kek_files_are_refused() -> None:
    with pytest.raises(KekFormatError):
        kek_from_key_file(b"\xff" * 31)


def test_decrypts_phe_and_our_ciphertexts(keys_3072: KeyPair) -> None:
    public_key, private_key = keys_3072
    values = [0, 5, -5, public_key.max_int, -public_key.max_int]
    ours = fast_encryptor(public_key).encrypt_vector(values)
    assert decrypt_vector(private_key, ours) == values
    assert decrypt_vector(private_key, [public_key.encrypt(v) for v in values]) == values
    assert decrypt_int(private_key, ours[1] + public_key.encrypt(2)) == 7
