"""A compromised scoring worker against packed comparison queries (securecompute.binding, "Packing
several requests").

A packed query answers several requests with few decryptions. The worker builds it, so it could try to
put into a request's slots something other than that request's own score: another authorised request's
score (one outside the pack, whose grant it does not spend), a request of another grant, or one request's
slots twice or in another request's place (two answers about one score). Each attack below is refused:
every request of the pack gets coins (``fixed_coins``: all positive), so the worker's view is the same
whatever the victims' data, and each is run again with the tag check switched off to show it is the check,
not the test, that stops it.
"""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditEntry
from datadomain import custodian
from datadomain.models import ComparisonGrant
from securecompute import binding, encrypted_score, private
from securecompute.tiering import PackItem, TieringState, build_packed_query, tier_index_from_answer, tiering_params
from tests.packing import answered, packing_key, packing_keypair  # noqa: F401 (fixtures)
from tests.security.attacks.conftest import MANUAL, Stolen, World
from underwriting.reference import builtin_documents
from underwriting.services.pipeline import manual_score_bound

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("packing_key")]
DOCUMENT = builtin_documents()[MANUAL]
THRESHOLDS = tuple(DOCUMENT.thresholds)
BOUND = manual_score_bound(DOCUMENT)


def item(request: Stolen, *, score_of: Stolen | None = None, tags_of: Stolen | None = None) -> PackItem:
    """``request``'s place in a pack, filled with ``score_of``'s encrypted score and ``tags_of``'s tag
    material (by default its own: the honest item)."""
    source = score_of or request
    score = encrypted_score(source.public_key, source.features, DOCUMENT.weights)
    return PackItem(request.ref, score, (tags_of or request).tags, THRESHOLDS, BOUND)


def send(items: list[PackItem], names: list[str] | None = None) -> tuple[dict[str, list[bool]], dict[str, Any]]:
    """Build a pack of ``items`` (named ``names``, by default the items' own requests), put it on the
    custodian's queue, and return each named request's signs and the worker's states."""
    public_key = items[0].score.public_key
    params = tiering_params(public_key.n.bit_length(), THRESHOLDS, score_bound=BOUND)
    query, states = build_packed_query(public_key, items, params=params, pack_id="pack-attack")
    message: dict[str, Any] = dict(query.to_dict())
    if names is not None:
        message["requests"] = names
    result = custodian.comparisons_answer_many(queries=[("pack-attack", message)])
    return {ref: answered(result, ref) for ref in message["requests"]}, states


def tier_read(signs: list[bool], state: TieringState) -> int | None:
    """The tier the worker reads from ``signs`` with its state (None: the signs are not monotone)."""
    from securecompute.errors import ProtocolError
    from securecompute.protocol import ComparisonAnswer

    try:
        return tier_index_from_answer(state, ComparisonAnswer(state.request_id, tuple(signs)))
    except ProtocolError:
        return None


def two_victims(world: World) -> tuple[list[Stolen], Stolen, Stolen]:
    """Three requests of the worker's own to pack, and two authorised requests outside the pack whose
    subjects fall in different tiers."""
    requests = world.authorise(len(world.data["people"]), prefix="P")
    by_tier: dict[int, Stolen] = {}
    for request in requests:
        by_tier.setdefault(request.true_tier, request)
    first, second = list(by_tier.values())[:2]
    own = [request for request in requests if request not in (first, second)][:3]
    return own, first, second


@pytest.fixture
def tag_check_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The custodian no longer checks a packed query's tags: all-zero combination coefficients make the
    combined tag 0 = 0 whatever the tags say."""
    monkeypatch.setattr(private, "combination_coefficients", lambda count: [0] * count)


def test_an_honest_pack_answers_each_request_with_its_own_tier(world: World) -> None:
    requests = world.authorise(7, prefix="H")
    params = tiering_params(requests[0].public_key.n.bit_length(), THRESHOLDS, score_bound=BOUND)
    assert params.groups >= 3  # several requests to one plaintext at 3072 bits

    signs, states = send([item(request) for request in requests])

    assert [tier_read(signs[r.ref], states[r.ref]) for r in requests] == [r.true_tier for r in requests]
    grants = ComparisonGrant.objects.filter(request_ref__in=[r.ref for r in requests])
    assert {grant.status for grant in grants} == {"answered"}
    assert grants.count() == 7  # each request's grant charged
    assert AuditEntry.objects.filter(action="custodian.answer").count() == 7


def test_another_requests_score_in_a_packed_slot_is_refused(
    world: World, fixed_coins: None, request: pytest.FixtureRequest
) -> None:
    """The worker puts an authorised request's score (outside the pack, its grant unspent) into the slots
    of one of its own requests, tagged with that request's material."""
    own, first, second = two_victims(world)

    def attack(victim: Stolen) -> dict[str, list[bool]]:
        signs, _ = send([item(own[0]), item(own[1], score_of=victim), item(own[2])])
        return signs

    learned = [attack(victim) for victim in (first, second)]
    assert learned[0] == learned[1]  # the same view whatever the victim: nothing learned
    assert set(learned[0][own[1].ref]) == {True}  # coins, and for every request of the pack
    assert ComparisonGrant.objects.get(request_ref=first.ref).status == "issued"  # the victim's grant untouched
    assert AuditEntry.objects.filter(action="custodian.misuse", detail__reason="bad_tag").count() == 3

    request.getfixturevalue("tag_check_off")
    ComparisonGrant.objects.filter(request_ref__in=[r.ref for r in own]).update(status="issued")
    read = []
    for victim in (first, second):
        ComparisonGrant.objects.filter(request_ref__in=[r.ref for r in own]).update(status="issued")
        signs, states = send([item(own[0]), item(own[1], score_of=victim), item(own[2])])
        read.append(tier_read(signs[own[1].ref], states[own[1].ref]))
    assert read == [first.true_tier, second.true_tier]  # undefended, the victims' tiers leak


def test_a_request_of_another_grant_cannot_fill_a_packed_slot(
    world: World, fixed_coins: None, request: pytest.FixtureRequest
) -> None:
    """The pack names three of the worker's requests, but the third place holds a request of another grant
    (its own score and tag material): the custodian checks each place with the grant of the request named."""
    own, first, second = two_victims(world)

    def attack(victim: Stolen) -> list[bool]:
        ComparisonGrant.objects.filter(request_ref__in=[r.ref for r in own]).update(status="issued")
        signs, _ = send([item(own[0]), item(own[1]), item(own[2], score_of=victim, tags_of=victim)])
        return signs[own[2].ref]

    assert attack(first) == attack(second) == [True] * len(THRESHOLDS)

    request.getfixturevalue("tag_check_off")
    read = []
    for victim in (first, second):
        ComparisonGrant.objects.filter(request_ref__in=[r.ref for r in own]).update(status="issued")
        signs, states = send([item(own[0]), item(own[1]), item(own[2], score_of=victim, tags_of=victim)])
        read.append(tier_read(signs[own[2].ref], states[own[2].ref]))
    assert read == [first.true_tier, second.true_tier]


def test_one_requests_slots_twice_or_swapped_in_a_pack_are_refused(
    world: World, fixed_coins: None, request: pytest.FixtureRequest
) -> None:
    """Two answers about one score under one grant: the first request's score in the second's place, with
    the first's tags (duplicated) or the second's (swapped); and a pack naming one request twice."""
    own = sorted(world.authorise(6, prefix="D"), key=lambda r: r.true_score)
    low, high, third = own[0], own[-1], own[1]
    assert low.true_score != high.true_score
    packs = {
        "duplicated": [item(low), item(high, score_of=low, tags_of=low), item(third)],
        "swapped": [item(low, score_of=high), item(high, score_of=low), item(third)],
    }
    for name, items in packs.items():
        ComparisonGrant.objects.filter(request_ref__in=[r.ref for r in own]).update(status="issued")
        signs, _ = send(items)
        assert all(set(s) == {True} for s in signs.values()), name
    ComparisonGrant.objects.filter(request_ref__in=[r.ref for r in own]).update(status="issued")
    signs, _ = send([item(low), item(third), item(high)], names=[low.ref, low.ref, high.ref])
    assert all(set(s) == {True} for s in signs.values())
    reasons = list(AuditEntry.objects.filter(action="custodian.misuse").values_list("detail__reason", flat=True))
    assert reasons.count("bad_tag") == 6
    assert "wrong_request" in reasons

    request.getfixturevalue("tag_check_off")
    ComparisonGrant.objects.filter(request_ref__in=[r.ref for r in own]).update(status="issued")
    signs, states = send(packs["duplicated"])
    # Undefended, the second place answers about the first request's score: two answers for one grant.
    assert tier_read(signs[high.ref], states[high.ref]) == low.true_tier != high.true_tier


def test_the_custodian_checks_every_tag_of_a_pack_with_one_decryption(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = world.authorise(9, prefix="C")
    params = tiering_params(requests[0].public_key.n.bit_length(), THRESHOLDS, score_bound=BOUND)
    decrypted: list[int] = []
    original = private._CrtKey.decrypt_mod_p

    def counting(self: Any, ciphertext: int) -> int:
        decrypted.append(ciphertext)
        return original(self, ciphertext)

    monkeypatch.setattr(private._CrtKey, "decrypt_mod_p", counting)
    signs, states = send([item(request) for request in requests])

    assert len(decrypted) == -(-9 // params.groups) + 1  # the value plaintexts and one combined tag
    assert [tier_read(signs[r.ref], states[r.ref]) for r in requests] == [r.true_tier for r in requests]
    assert binding.COMBINATION_BITS >= 128
