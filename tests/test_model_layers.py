"""Layers hold for tables too: a model's relations point to its own layer or below.

import-linter cannot see a foreign key written as a string (``"tenants.Insurer"``), so this walks every
installed model's forward relations (ForeignKey, OneToOneField, ManyToManyField) and checks them against
the layer order of .importlinter's ``layers`` contract. Apps outside that contract (Django's own, OTP) are
the framework below every layer.
"""

from __future__ import annotations

import configparser
from collections.abc import Iterable
from pathlib import Path

from django.apps import apps
from django.db import models
from django.test.utils import isolate_apps

ROOT = Path(__file__).resolve().parent.parent


def layer_order() -> list[str]:
    """The packages of the import contract's layers, highest first."""
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    return config["importlinter:contract:layers"]["layers"].split()


def layer_of(model: type[models.Model], layers: list[str]) -> int | None:
    package = model._meta.app_config.name.split(".")[0]
    return layers.index(package) if package in layers else None


def upward_relations(candidates: Iterable[type[models.Model]]) -> list[str]:
    """``app.Model.field -> app.Target`` for each relation that points to a higher layer than its model's."""
    layers = layer_order()
    found = []
    for model in candidates:
        source = layer_of(model, layers)
        if source is None:
            continue
        for field in model._meta.get_fields():
            if not isinstance(field, models.ForeignObject | models.ManyToManyField):
                continue  # reverse relations and plain columns
            target_model = field.related_model
            assert isinstance(target_model, type), f"{model._meta.label}.{field.name} is unresolved"
            target = layer_of(target_model, layers)
            if target is not None and target < source:
                found.append(f"{model._meta.label}.{field.name} -> {target_model._meta.label}")
    return found


def test_every_relation_points_to_its_own_layer_or_below() -> None:
    assert upward_relations(apps.get_models()) == []


def test_the_walk_sees_relations_across_layers() -> None:
    # Guards the guard: a walk that saw nothing would pass the test above too.
    batch_row = apps.get_model("insurer_portal", "BatchRow")
    request = apps.get_model("underwriting", "UnderwritingRequest")
    assert batch_row._meta.get_field("request").related_model is request
    assert request._meta.get_field("insurer").related_model is apps.get_model("tenants", "Insurer")


@isolate_apps("tenants", "underwriting", "insurer_portal")
def test_a_relation_to_a_higher_layer_is_caught() -> None:
    class Request(models.Model):  # noqa: DJ008
        class Meta:
            app_label = "underwriting"

    class Insurer(models.Model):  # noqa: DJ008
        class Meta:
            app_label = "tenants"

    class Planted(models.Model):  # noqa: DJ008
        insurer = models.ForeignKey(Insurer, on_delete=models.CASCADE)
        last_request = models.OneToOneField(Request, on_delete=models.CASCADE, related_name="+")
        requests = models.ManyToManyField(Request, related_name="+")

        class Meta:
            app_label = "tenants"

    class Batch(models.Model):  # noqa: DJ008
        insurer = models.ForeignKey(Insurer, on_delete=models.CASCADE)  # down two layers: allowed
        request = models.ForeignKey(Request, on_delete=models.CASCADE)  # down one layer: allowed

        class Meta:
            app_label = "insurer_portal"

    assert upward_relations([Request, Insurer, Planted, Batch]) == [
        "tenants.Planted.last_request -> underwriting.Request",
        "tenants.Planted.requests -> underwriting.Request",
    ]
