"""A compromised scoring worker against the key custodian.

The worker can read every request's ScoringInput and send the custodian any message. Before the MAC
binding it recovered another person's whole Charlson vector under one ordinary grant, because the
custodian decrypted any ciphertext and refused (for free, and visibly) what fell outside a range. Each test
runs the attack, asserts what the worker learned, and runs it again with the defence switched off
(``undefended``) to show the attack is real.
"""

from __future__ import annotations

import random
from typing import Any

import gmpy2
import pytest

from audit.models import AuditEntry
from datadomain import custodian
from datadomain.models import ComparisonGrant
from securecompute import encrypted_score, fast_encryptor
from securecompute.binding import binding_params
from securecompute.protocol import ComparisonQuery, pack_slots
from securecompute.tiering import TieringState, build_tier_query, tier_index_from_answer, tiering_params
from tests.security.attacks.conftest import MANUAL, Stolen, Undefended, World, ask, outcome
from underwriting.models import FlagKind, MisuseFlag
from underwriting.reference import builtin_documents
from underwriting.services.flags import flags_evaluate
from underwriting.services.pipeline import manual_score_bound

pytestmark = pytest.mark.django_db
DOCUMENT = builtin_documents()[MANUAL]
THRESHOLDS = DOCUMENT.thresholds


def indicator_probe(own: Stolen, ciphertext: Any) -> dict[str, Any]:
    """A query under ``own``'s grant whose first slot is positive when the victim's feature is 1 or more, -1
    when 0: ``Enc(2x - 1 + offset)`` in slot 0, +1 in every other slot, packed as the grant's layout says.
    An honest decryption answers the indicator."""
    nsquare = own.public_key.n**2
    encryptor = fast_encryptor(own.public_key)
    layout = binding_params(own.public_key.n.bit_length(), own.slot_bits, len(THRESHOLDS)).layout()
    probe = gmpy2.powmod(ciphertext.ciphertext(be_secure=False), 2, nsquare)
    packed = [int(probe * encryptor.encrypt_residue(pack_slots([-1] + [1] * (layout[0] - 1), own.slot_bits)) % nsquare)]
    packed += [encryptor.encrypt_residue(pack_slots([1] * count, own.slot_bits)) for count in layout[1:]]
    return ComparisonQuery(own.key_id, own.ref, len(THRESHOLDS), own.slot_bits, tuple(packed)).to_dict()


def recover_vector(world: World, victim: Stolen, prefix: str) -> list[int]:
    """The attack of the report: one of the victim's 17 indicators per query, each under a grant of one of
    the worker's own (legitimate) requests."""
    own = world.authorise(len(victim.features), prefix=prefix)
    return [
        int(ask(mine.ref, indicator_probe(mine, feature))[0])
        for mine, feature in zip(own, victim.features, strict=True)
    ]


def victims(world: World) -> tuple[Stolen, Stolen]:
    """Two authorised requests for people with different Charlson vectors (one with some history)."""
    requests = world.authorise(len(world.data["people"]), prefix="V")
    ranked = sorted(requests, key=lambda stolen: sum(stolen.true_features), reverse=True)
    other = next(stolen for stolen in ranked if stolen.true_features != ranked[0].true_features)
    return ranked[0], other


def test_another_persons_indicators_cannot_be_read_through_the_custodian(
    world: World, fixed_coins: None, undefended: Undefended
) -> None:
    first, second = victims(world)
    assert sum(first.true_features) > 0

    learned = [recover_vector(world, victim, f"A{i}") for i, victim in enumerate((first, second))]

    # The worker's view is the same whatever the victim's record: it learned nothing about either.
    assert learned[0] == learned[1]
    refused = AuditEntry.objects.filter(action="custodian.misuse", detail__reason="bad_tag").count()
    assert refused == 2 * len(first.features)

    undefended("tag")
    # Without the tag: which of the 17 categories (and whether any age points) the victim has, every one.
    assert recover_vector(world, first, "U") == [int(value > 0) for value in first.true_features]


def build(own: Stolen, features: list[Any], thresholds: list[int], seed: int) -> tuple[dict[str, Any], TieringState]:
    """A query built as the scoring worker builds it (same bound, same packing), under ``own``'s grant and
    tags, on the score of ``features``."""
    score = encrypted_score(own.public_key, features, DOCUMENT.weights)
    bound = manual_score_bound(DOCUMENT)
    params = tiering_params(own.public_key.n.bit_length(), thresholds, score_bound=bound)
    query, state = build_tier_query(
        own.public_key, score, own.tags, thresholds, request_id=own.ref, params=params, score_bound=bound,
        rng=random.Random(seed),
    )  # fmt: skip
    return query.to_dict(), state


def foreign_score_query(own: Stolen, victim: Stolen, seed: int) -> tuple[dict[str, Any], TieringState]:
    """An honestly built query, with the worker's own grant and tags, on the victim's score."""
    return build(own, victim.features, THRESHOLDS, seed)


def own_request(world: World, victim: Stolen, prefix: str) -> Stolen:
    """A request of the worker's own for someone whose score differs from the victim's (the same score
    would make the victim's query an honest one for this request)."""
    for person in range(len(world.data["people"])):
        own = world.authorise(1, prefix=f"{prefix}{person}", people=[person])[0]
        if own.true_score != victim.true_score:
            return own
    raise AssertionError("everybody has the victim's score")


def tier_of_victim(world: World, victim: Stolen, prefix: str) -> list[bool]:
    own = own_request(world, victim, prefix)
    query, _ = foreign_score_query(own, victim, seed=7)
    return ask(own.ref, query)


def test_another_subjects_score_under_a_legitimate_grant_is_not_compared(
    world: World, fixed_coins: None, undefended: Undefended
) -> None:
    requests = world.authorise(len(world.data["people"]), prefix="V")
    low = next(stolen for stolen in requests if stolen.true_tier == 0)
    high = max(requests, key=lambda stolen: stolen.true_score)
    assert high.true_tier > low.true_tier

    answers = [tier_of_victim(world, victim, f"F{i}") for i, victim in enumerate((low, high))]

    assert answers[0] == answers[1]  # the same signs for a tier-A and a tier-D victim: nothing learned
    assert AuditEntry.objects.filter(action="custodian.misuse", detail__reason="bad_tag").count() == 2

    undefended("tag")
    for victim in (low, high):
        own = own_request(world, victim, f"U{victim.ref[:4]}")
        query, state = foreign_score_query(own, victim, seed=7)
        decoded = tier_index_from_answer(state, _answer(own.ref, ask(own.ref, query)))
        assert decoded == victim.true_tier  # without the tag the victim's tier comes out


def _answer(ref: str, signs: list[bool]) -> Any:
    from securecompute.protocol import ComparisonAnswer

    return ComparisonAnswer(ref, tuple(signs))


def honest(stolen: Stolen, thresholds: list[int], seed: int) -> tuple[dict[str, Any], TieringState]:
    return build(stolen, stolen.features, thresholds, seed)


def exact_score_probe(world: World, stolen: Stolen) -> list[int]:
    """The worker answers the request honestly, then asks again with thresholds shifted by one to narrow
    the score down: the tiers of both queries bound the score from both sides."""
    query, state = honest(stolen, THRESHOLDS, seed=1)
    first = tier_index_from_answer(state, _answer(stolen.ref, ask(stolen.ref, query)))
    assert ask(stolen.ref, query) == ask(stolen.ref, query)  # a redelivery gets the same answer again
    shifted = [t - 1 for t in THRESHOLDS]
    second_query, second_state = honest(stolen, shifted, seed=2)
    try:
        second = tier_index_from_answer(second_state, _answer(stolen.ref, ask(stolen.ref, second_query)))
    except Exception:  # noqa: BLE001 - an answer that is not monotone tells the worker nothing
        second = -1
    return [first, second]


def test_a_second_query_under_a_spent_grant_learns_nothing_more(
    world: World, fixed_coins: None, undefended: Undefended
) -> None:
    requests = world.authorise(len(world.data["people"]), prefix="V")
    by_second_tier: dict[int, Stolen] = {}
    for stolen in requests:  # two requests in the same first tier but on different sides of the shift
        by_second_tier.setdefault(sum(1 for t in THRESHOLDS if stolen.true_score > t - 1), stolen)
    pair = sorted(by_second_tier.values(), key=lambda s: s.true_score)

    first, second = (exact_score_probe(world, stolen) for stolen in pair[:2])

    assert first[1] == second[1]  # the second answer is the same whatever the score: no more comparisons
    assert {outcome(stolen.ref) for stolen in pair[:2]} == {"answered"}
    assert AuditEntry.objects.filter(action="custodian.misuse", detail__reason="grant_spent").count() == 2
    assert AuditEntry.objects.filter(action="custodian.answer", detail__replay=True).count() >= 2

    undefended("single_use")
    fresh = world.authorise(1, prefix="U", people=[0])[0]
    learned = exact_score_probe(world, fresh)
    assert learned[1] == sum(1 for t in THRESHOLDS if fresh.true_score > t - 1)  # reusable: k more bits


def test_each_reply_says_whether_the_query_spent_its_grant(world: World, fixed_coins: None) -> None:
    """The grant's one decryption is spent by the first query; the same query again gets the stored answer
    and decrypts nothing; another query under the spent grant decrypts nothing and gets coins."""
    stolen = world.authorise(1, prefix="S")[0]
    query, _ = honest(stolen, THRESHOLDS, seed=4)
    other, _ = honest(stolen, [t - 1 for t in THRESHOLDS], seed=5)

    def reply(sent: dict[str, Any]) -> custodian.Reply:
        return custodian.comparisons_answer_many(queries=[(stolen.ref, sent)])[stolen.ref]

    first, again, probe = reply(query), reply(query), reply(other)
    assert [(r.use, r.refusal) for r in (first, again, probe)] == [
        (custodian.GrantUse.SPENT, ""),
        (custodian.GrantUse.STORED, ""),
        (custodian.GrantUse.REFUSED, "grant_spent"),
    ]
    assert again.answer == first.answer
    assert probe.answer["positive"] == [True] * len(THRESHOLDS)  # coins


def test_a_query_with_more_comparisons_than_the_manual_has_thresholds_is_not_answered(
    world: World, fixed_coins: None
) -> None:
    stolen = world.authorise(1, prefix="K")[0]
    wider = [-2, -1, 0, 1, 2, 3, 4, 5]
    query, _ = honest(stolen, wider, seed=3)
    signs = ask(stolen.ref, query)
    assert signs == [True] * len(THRESHOLDS)  # the grant's k coins, not eight comparisons
    assert outcome(stolen.ref) == "wrong_shape"


def test_a_grant_cannot_be_used_after_its_request_completed(
    world: World, fixed_coins: None, undefended: Undefended, django_capture_on_commit_callbacks: Any
) -> None:
    from underwriting.models import UnderwritingRequest
    from underwriting.services.pipeline import stage_drain

    stolen = world.authorise(1, prefix="C")[0]
    with django_capture_on_commit_callbacks(execute=True):
        stage_drain("score")
    assert UnderwritingRequest.objects.get(pk=stolen.ref).status == "completed"

    query, state = honest(stolen, [t + 1 for t in THRESHOLDS], seed=4)
    assert ask(stolen.ref, query) == [True] * len(THRESHOLDS)
    assert AuditEntry.objects.filter(action="custodian.misuse", target_id=stolen.ref).get().detail == {
        "reason": "grant_spent", "comparisons": len(THRESHOLDS),
    }  # fmt: skip

    undefended("single_use")
    signs = ask(stolen.ref, query)
    assert tier_index_from_answer(state, _answer(stolen.ref, signs)) == sum(
        1 for t in THRESHOLDS if stolen.true_score > t + 1
    )


def test_queries_without_a_live_grant_get_coins_and_raise_a_flag(world: World, fixed_coins: None) -> None:
    stolen = world.authorise(2, prefix="E")
    query, _ = honest(stolen[0], THRESHOLDS, seed=5)
    assert ask("not-a-request", {**query, "request_id": "not-a-request"}) == [True] * len(THRESHOLDS)
    ComparisonGrant.objects.filter(request_ref=stolen[1].ref).update(expires_at="2000-01-01T00:00:00Z")
    expired, _ = honest(stolen[1], THRESHOLDS, seed=6)
    assert ask(stolen[1].ref, expired) == [True] * len(THRESHOLDS)
    assert outcome(stolen[1].ref) == "expired"
    reasons = sorted(e.detail["reason"] for e in AuditEntry.objects.filter(action="custodian.misuse"))
    assert reasons == ["expired", "no_grant"]

    flags_evaluate()
    flag = MisuseFlag.objects.get(kind=FlagKind.CUSTODIAN_MISUSE)
    assert flag.count == 2
    assert flag.insurer_id is None


def test_a_refused_query_gets_the_same_coins_however_often_it_is_sent(world: World) -> None:
    """A failed check answers coins keyed by the grant's MAC key and the query: sending the query again,
    even racing a redelivery of it (here: the grant left spent and unanswered, as a crash would leave it),
    shows the worker the same answer, so comparing answers cannot tell a refusal from a real tier."""
    own, victim = world.authorise(2, prefix="R", people=[0, 1])
    query, _ = foreign_score_query(own, victim, seed=9)
    first = ask(own.ref, query)
    ComparisonGrant.objects.filter(request_ref=own.ref).update(status="spent", answer=None)
    assert ask(own.ref, query) == first
    assert ask(own.ref, query) == first  # and again from the stored answer
    assert outcome(own.ref) in ("bad_tag", "answered")


def test_a_query_that_is_not_even_an_object_is_answered_and_recorded(world: World, fixed_coins: None) -> None:
    stolen = world.authorise(1, prefix="M")[0]
    reply = custodian.comparisons_answer_many(queries=[(stolen.ref, [])])[stolen.ref]  # type: ignore[list-item]
    assert (reply.answer["positive"], reply.use, reply.refusal) == ([True] * 3, custodian.GrantUse.SPENT, "malformed")
    assert outcome(stolen.ref) == "malformed"
    assert AuditEntry.objects.filter(action="custodian.misuse", detail__reason="malformed").count() == 1


def test_a_custodian_that_cannot_open_its_key_answers_nothing_and_spends_nothing(world: World, settings: Any) -> None:
    """A wrong KEK (after a KEK rotation, say) has nothing to do with any plaintext: the task fails and the
    grant stays issued, to be answered once the custodian is fixed, instead of coins an honest worker would
    read as a tier."""
    from securecompute.errors import WrongKekError

    stolen = world.authorise(1, prefix="K")[0]
    query, state = honest(stolen, THRESHOLDS, seed=10)
    kek = settings.CUSTODIAN_KEK
    custodian._private_key.cache_clear()
    settings.CUSTODIAN_KEK = "0123456789abcdef" * 4
    with pytest.raises(WrongKekError):
        custodian.comparisons_answer_many(queries=[(stolen.ref, query)])
    assert ComparisonGrant.objects.get(request_ref=stolen.ref).status == "issued"
    settings.CUSTODIAN_KEK = kek
    custodian._private_key.cache_clear()
    assert tier_index_from_answer(state, _answer(stolen.ref, ask(stolen.ref, query))) == stolen.true_tier
