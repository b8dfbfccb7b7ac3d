from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from tenants.models import Insurer


class InsurerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Insurer
        django_get_or_create = ["slug"]

    slug = factory.Sequence(lambda n: f"insurer-{n}")
    name = factory.Sequence(lambda n: f"Insurer {n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("a-long-test-password")
