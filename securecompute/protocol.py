"""Messages of the blinded comparison protocol and their JSON form (big integers as hex strings).

A scoring worker sends a :class:`ComparisonQuery` to the key custodian and gets a :class:`ComparisonAnswer`
back; both travel through Celery's JSON serializer. Slot layout, shared by both sides: ``k`` comparisons
are packed ``capacity`` to a plaintext (:func:`securecompute.binding.binding_params`: room is left for the
MAC tag); slot ``j`` of a plaintext occupies bits ``[j * slot_bits, (j + 1) * slot_bits)`` and holds
``v + 2^(slot_bits - 1)`` for a signed value ``v != 0``. Slots are numbered across ciphertexts in order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import phe

from securecompute.errors import ProtocolError, WrongKeyError
from securecompute.keys import key_id, parse_hex
from securecompute.paillier import check_ciphertext, encrypted_number, modulus, raw_ciphertext

# 2: queries carry the request's MAC tag (securecompute.binding); a version-1 query cannot pass its check.
PROTOCOL_VERSION = 2
# Vectors of ciphertexts kept their format.
CIPHERTEXTS_VERSION = 1
MIN_SLOT_BITS = 8
MAX_COMPARISONS = 64


class QueryJSON(TypedDict):
    v: int
    key_id: str
    request_id: str
    comparisons: int
    slot_bits: int
    ciphertexts: list[str]


class AnswerJSON(TypedDict):
    v: int
    request_id: str
    positive: list[bool]


class CiphertextsJSON(TypedDict):
    v: int
    key_id: str
    ciphertexts: list[str]


@dataclass(frozen=True)
class ComparisonQuery:
    """``comparisons`` blinded values packed into ``ciphertexts`` (see the module docstring for the layout)."""

    key_id: str
    request_id: str
    comparisons: int
    slot_bits: int
    ciphertexts: tuple[int, ...]

    def to_dict(self) -> QueryJSON:
        return {
            "v": PROTOCOL_VERSION,
            "key_id": self.key_id,
            "request_id": self.request_id,
            "comparisons": self.comparisons,
            "slot_bits": self.slot_bits,
            "ciphertexts": [format(c, "x") for c in self.ciphertexts],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ComparisonQuery:
        _check_version(data)
        ciphertexts = data.get("ciphertexts")
        if not isinstance(ciphertexts, list):
            raise ProtocolError("query ciphertexts must be a list")
        return cls(
            key_id=_string(data, "key_id"),
            request_id=_string(data, "request_id"),
            comparisons=_integer(data, "comparisons"),
            slot_bits=_integer(data, "slot_bits"),
            ciphertexts=tuple(parse_hex(c, "ciphertext") for c in ciphertexts),
        )


class PackedQueryJSON(TypedDict):
    v: int
    key_id: str
    pack: str
    requests: list[str]
    comparisons: int
    slot_bits: int
    values: list[str]
    tags: list[str]


@dataclass(frozen=True)
class PackedQuery:
    """The blinded comparisons of several requests of one shape (``comparisons`` slots of ``slot_bits``)
    in few ciphertexts (securecompute.binding, "Packing several requests"): value plaintext ``t`` holds
    the slot groups of requests ``t*m .. t*m + m - 1`` of ``request_ids`` (``m`` from the binding
    parameters), the first at bit 0, and ``tags[t]`` its tag. ``pack_id`` names the pack in messages."""

    key_id: str
    pack_id: str
    request_ids: tuple[str, ...]
    comparisons: int
    slot_bits: int
    values: tuple[int, ...]
    tags: tuple[int, ...]

    def to_dict(self) -> PackedQueryJSON:
        return {
            "v": PROTOCOL_VERSION,
            "key_id": self.key_id,
            "pack": self.pack_id,
            "requests": list(self.request_ids),
            "comparisons": self.comparisons,
            "slot_bits": self.slot_bits,
            "values": [format(c, "x") for c in self.values],
            "tags": [format(c, "x") for c in self.tags],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PackedQuery:
        _check_version(data)
        requests, values, tags = data.get("requests"), data.get("values"), data.get("tags")
        if not isinstance(requests, list) or not all(isinstance(r, str) and r for r in requests):
            raise ProtocolError("a packed query's requests must be a list of request ids")
        if not isinstance(values, list) or not isinstance(tags, list):
            raise ProtocolError("a packed query's values and tags must be lists")
        return cls(
            key_id=_string(data, "key_id"),
            pack_id=_string(data, "pack"),
            request_ids=tuple(requests),
            comparisons=_integer(data, "comparisons"),
            slot_bits=_integer(data, "slot_bits"),
            values=tuple(parse_hex(c, "ciphertext") for c in values),
            tags=tuple(parse_hex(c, "ciphertext") for c in tags),
        )


def is_packed(data: object) -> bool:
    """Whether a message on the custodian's queue is a packed query (it names several requests)."""
    return isinstance(data, Mapping) and "requests" in data


@dataclass(frozen=True)
class ComparisonAnswer:
    """``positive[j]`` is True when slot ``j`` of the query decrypted to a positive value."""

    request_id: str
    positive: tuple[bool, ...]

    def to_dict(self) -> AnswerJSON:
        return {"v": PROTOCOL_VERSION, "request_id": self.request_id, "positive": list(self.positive)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ComparisonAnswer:
        _check_version(data)
        positive = data.get("positive")
        if not isinstance(positive, list) or not all(isinstance(p, bool) for p in positive):
            raise ProtocolError("answer signs must be a list of booleans")
        return cls(request_id=_string(data, "request_id"), positive=tuple(positive))


def pack_slots(values: Sequence[int], slot_bits: int) -> int:
    """The plaintext holding signed ``values`` (each ``0 < |v| < 2^(slot_bits - 1)``)."""
    offset = 1 << (slot_bits - 1)
    packed = 0
    for position, value in enumerate(values):
        if not 0 < abs(value) < offset:
            raise ProtocolError(f"slot value out of range for {slot_bits}-bit slots")
        packed |= (value + offset) << (position * slot_bits)
    return packed


def query_to_json(query: ComparisonQuery) -> str:
    return json.dumps(query.to_dict())


def query_from_json(data: str | Mapping[str, Any]) -> ComparisonQuery:
    return ComparisonQuery.from_dict(_document(data))


def answer_to_json(answer: ComparisonAnswer) -> str:
    return json.dumps(answer.to_dict())


def answer_from_json(data: str | Mapping[str, Any]) -> ComparisonAnswer:
    return ComparisonAnswer.from_dict(_document(data))


def ciphertexts_to_dict(values: Sequence[phe.EncryptedNumber]) -> CiphertextsJSON:
    if not values:
        raise ValueError("cannot serialize an empty vector: its key would be unknown")
    public_key = values[0].public_key
    return {
        "v": CIPHERTEXTS_VERSION,
        "key_id": key_id(public_key),
        "ciphertexts": [format(raw_ciphertext(value, public_key), "x") for value in values],
    }


def ciphertexts_to_json(values: Sequence[phe.EncryptedNumber]) -> str:
    """``{"v": 1, "key_id": ..., "ciphertexts": [hex, ...]}`` for a vector of integer encryptions."""
    return json.dumps(ciphertexts_to_dict(values))


def ciphertexts_from_json(
    data: str | Mapping[str, Any], public_key: phe.PaillierPublicKey
) -> list[phe.EncryptedNumber]:
    """Parse :func:`ciphertexts_to_json` output; refuses another key and invalid ciphertexts."""
    document = _document(data)
    _check_version(document, CIPHERTEXTS_VERSION)
    if document.get("key_id") != key_id(public_key):
        raise WrongKeyError("the ciphertexts were encrypted under another public key")
    raw = document.get("ciphertexts")
    if not isinstance(raw, list):
        raise ProtocolError("ciphertexts must be a list")
    n = modulus(public_key)
    values = []
    for item in raw:
        ciphertext = parse_hex(item, "ciphertext")
        check_ciphertext(ciphertext, n)
        values.append(encrypted_number(public_key, ciphertext, obfuscated=False))
    return values


def _document(data: str | Mapping[str, Any]) -> Mapping[str, Any]:
    document = json.loads(data) if isinstance(data, str) else data
    if not isinstance(document, Mapping):
        raise ProtocolError("expected a JSON object")
    return document


def _check_version(data: Mapping[str, Any], version: int = PROTOCOL_VERSION) -> None:
    if data.get("v") != version:
        raise ProtocolError(f"unsupported protocol version {data.get('v')!r}")


def _string(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise ProtocolError(f"{name} must be a string")
    return value


def _integer(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{name} must be an integer")
    return value
