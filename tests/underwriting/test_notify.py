"""Wake-ups for ``?wait``: published on terminal transitions after commit, and they end a wait at once."""

from __future__ import annotations

import threading
import uuid
from datetime import date
from typing import Any

import pytest
import redis
from django.db import transaction

from tests.factories import InsurerFactory
from tests.services import require_redis
from underwriting.models import RequestStatus, UnderwritingRequest
from underwriting.services import notify
from underwriting.services.state import transition

pytestmark = pytest.mark.django_db(transaction=True)


def make_request(status: str = RequestStatus.VERIFYING) -> UnderwritingRequest:
    return UnderwritingRequest.objects.create(
        insurer=InsurerFactory(), reference="N-1", subject_key="f" * 64, resident_id_masked="110101********001X",
        manual_slug="charlson-acci", as_of=date(2026, 11, 23), status=status,
    )  # fmt: skip


@pytest.fixture
def live_redis(settings: Any) -> redis.Redis:
    settings.REDIS_URL = require_redis()
    return redis.Redis.from_url(settings.REDIS_URL)


def listen(client: redis.Redis, request_id: uuid.UUID) -> Any:
    subscription = client.pubsub(ignore_subscribe_messages=True)
    subscription.subscribe(notify.channel(request_id))
    assert subscription.get_message(timeout=5) is None  # consumes the subscribe confirmation
    return subscription


def test_a_terminal_transition_is_announced_once_committed(live_redis: redis.Redis) -> None:
    request = make_request()
    subscription = listen(live_redis, request.pk)
    with transaction.atomic():
        assert transition(request.pk, from_status=RequestStatus.VERIFYING, to_status=RequestStatus.REJECTED)
        assert subscription.get_message(timeout=0.3) is None  # not before the commit
    message = subscription.get_message(timeout=5)
    assert message is not None
    assert message["data"] == b"1"
    assert str(request.pk) in message["channel"].decode()
    subscription.close()


def test_rolled_back_and_non_terminal_transitions_are_not_announced(live_redis: redis.Redis) -> None:
    request = make_request()
    subscription = listen(live_redis, request.pk)
    assert transition(request.pk, from_status=RequestStatus.VERIFYING, to_status=RequestStatus.EXTRACTING)

    def fail_then_roll_back() -> None:
        with transaction.atomic():
            transition(request.pk, from_status=RequestStatus.EXTRACTING, to_status=RequestStatus.FAILED)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        fail_then_roll_back()
    assert subscription.get_message(timeout=0.5) is None
    assert UnderwritingRequest.objects.get(pk=request.pk).status == RequestStatus.EXTRACTING
    subscription.close()


def test_a_waiter_sleeps_until_the_wake_up(live_redis: redis.Redis) -> None:
    """The fallback read comes only after a minute, so the waiter can only finish early by the message."""
    request_id = uuid.uuid4()
    done = threading.Event()
    reads: list[bool] = []
    outcome: list[bool] = []

    def is_terminal() -> bool:
        reads.append(done.is_set())
        return done.is_set()

    waiter = threading.Thread(
        target=lambda: outcome.append(notify.wait_terminal(request_id, is_terminal, 60, poll_seconds=60))
    )
    waiter.start()
    channel = notify.channel(request_id)
    for _ in range(500):  # until the waiter has subscribed
        if dict(live_redis.pubsub_numsub(channel)).get(channel.encode()):
            break
        threading.Event().wait(0.01)
    done.set()
    notify._publish(live_redis, [channel])
    waiter.join(timeout=20)
    assert not waiter.is_alive(), "the wake-up did not end the wait"
    assert outcome == [True]
    assert reads[-1] is True
    assert reads.count(False) <= 1  # one read after subscribing, none for the subscription's confirmation
    assert not dict(live_redis.pubsub_numsub(channel)).get(channel.encode())  # unsubscribed afterwards


def test_without_redis_a_waiter_polls_and_gives_up_at_the_deadline(settings: Any) -> None:
    settings.REDIS_URL = ""
    answers = iter([False, False, True])
    assert notify.wait_terminal(uuid.uuid4(), lambda: next(answers), 5) is True
    assert notify.wait_terminal(uuid.uuid4(), lambda: False, 0.2) is False


def test_the_waiters_of_a_process_share_one_subscription_connection(live_redis: redis.Redis) -> None:
    """Three waits on three requests subscribe on one connection, not one connection each."""
    done = threading.Event()
    channels = []
    waiters = []
    for _ in range(3):
        request_id = uuid.uuid4()
        channels.append(notify.channel(request_id))
        waiters.append(threading.Thread(target=notify.wait_terminal, args=(request_id, done.is_set, 30)))
        waiters[-1].start()
    for _ in range(500):  # until all three have subscribed
        if all(dict(live_redis.pubsub_numsub(name)).get(name.encode()) for name in channels):
            break
        threading.Event().wait(0.01)
    subscribed = [int(client["sub"]) for client in live_redis.client_list() if int(client.get("sub", 0)) >= 3]
    done.set()
    notify._publish(live_redis, channels)
    for waiter in waiters:
        waiter.join(timeout=20)
        assert not waiter.is_alive()
    assert subscribed, "no connection holds the three subscriptions"
    assert all(not dict(live_redis.pubsub_numsub(name)).get(name.encode()) for name in channels)
