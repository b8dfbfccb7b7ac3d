"""What a model reviewer reads before approving a rating manual: its weights (feature -> points), its tiers
(score range -> tier -> decision) and what changed since the previous approved version of the same manual.

The comparison (:func:`manual_review`) is plain: it takes two parsed documents and the catalog's feature
labels. :func:`manual_review_for` adds the one read it needs, the previous approved version.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from datadomain import selectors as domain
from underwriting import selectors
from underwriting.manual_format import ManualDocument, ManualTier
from underwriting.models import DECISION_LABELS, RatingManual

Change = Literal["", "added", "removed", "changed"]
CHANGE_LABELS = {"added": _("added"), "removed": _("removed"), "changed": _("changed")}


@dataclass(frozen=True)
class WeightRow:
    name: str
    label: str
    points: int | None  # None: removed in this version
    previous_points: int | None  # None: not in the previous version
    change: Change

    @property
    def change_label(self) -> str:
        return str(CHANGE_LABELS.get(self.change, ""))


@dataclass(frozen=True)
class ScoreRange:
    """The scores a tier takes, both ends inclusive; None is open (the first and the last tier)."""

    low: int | None
    high: int | None

    def __str__(self) -> str:
        if self.low is None and self.high is None:
            return str(_("any score"))
        if self.low is None:
            return f"≤ {self.high}"
        if self.high is None:
            return f"≥ {self.low}"
        return str(self.low) if self.low == self.high else f"{self.low}\u2013{self.high}"


@dataclass(frozen=True)
class TierRow:
    code: str
    label: str
    scores: ScoreRange
    decision: str
    table_rating: str
    change: Change
    previous: TierRow | None = None  # the same tier code in the previous version, when it differs

    @property
    def change_label(self) -> str:
        return str(CHANGE_LABELS.get(self.change, ""))

    @property
    def decision_label(self) -> str:
        return str(DECISION_LABELS.get(self.decision, self.decision))


@dataclass(frozen=True)
class ManualReview:
    weights: list[WeightRow]
    tiers: list[TierRow]
    previous_version: int | None  # None: no earlier approved version of this manual

    @property
    def changes(self) -> int:
        return sum(1 for row in self.weights if row.change) + sum(1 for row in self.tiers if row.change)


def tier_rows(tiers: tuple[ManualTier, ...]) -> list[TierRow]:
    """Each tier with its score range: a tier takes the scores above the previous tier's ``max_score`` up to
    its own (the first has no lower end, the last no upper end; scores may be negative)."""
    rows: list[TierRow] = []
    low: int | None = None
    for tier in tiers:
        scores = ScoreRange(low=low, high=tier.max_score)
        label = tier.label_in(get_language())
        rows.append(TierRow(tier.code, label, scores, tier.decision, tier.table_rating or "", change=""))
        low = tier.max_score + 1 if tier.max_score is not None else None
    return rows


def _weights(current: ManualDocument, previous: ManualDocument | None, labels: dict[str, str]) -> list[WeightRow]:
    before = {feature.name: feature.weight for feature in previous.features} if previous else {}
    rows = []
    for feature in current.features:
        old = before.get(feature.name)
        change: Change = "" if previous is None or old == feature.weight else "added" if old is None else "changed"
        rows.append(WeightRow(feature.name, labels.get(feature.name, feature.name), feature.weight, old, change))
    names = set(current.feature_names)
    rows += [
        WeightRow(name, labels.get(name, name), None, weight, "removed")
        for name, weight in before.items()
        if name not in names
    ]
    return rows


def _tiers(current: ManualDocument, previous: ManualDocument | None) -> list[TierRow]:
    before = {row.code: row for row in tier_rows(previous.tiers)} if previous else {}
    rows = []
    for row in tier_rows(current.tiers):
        old = before.get(row.code)
        if previous is None:
            rows.append(row)
        elif old is None:
            rows.append(replace(row, change="added"))
        elif (old.label, old.scores, old.decision, old.table_rating) != (
            row.label,
            row.scores,
            row.decision,
            row.table_rating,
        ):
            rows.append(replace(row, change="changed", previous=old))
        else:
            rows.append(row)
    codes = {tier.code for tier in current.tiers}
    return rows + [replace(row, change="removed") for code, row in before.items() if code not in codes]


def manual_review(current: ManualDocument, previous: ManualDocument | None, labels: dict[str, str]) -> ManualReview:
    """Weights and tiers of ``current``, each marked added, removed or changed against ``previous`` (the
    previous approved version; None for a first version, where nothing is marked)."""
    return ManualReview(
        weights=_weights(current, previous, labels),
        tiers=_tiers(current, previous),
        previous_version=previous.version if previous else None,
    )


def previous_approved(manual: RatingManual) -> RatingManual | None:
    """The newest version of the same manual below this one that was approved (still in use or retired since)."""
    return (
        RatingManual.objects.filter(slug=manual.slug, version__lt=manual.version, approved_by__isnull=False)
        .order_by("-version")
        .first()
    )


def manual_review_for(manual: RatingManual) -> ManualReview:
    previous = previous_approved(manual)
    return manual_review(
        selectors.manual_document(manual),
        selectors.manual_document(previous) if previous else None,
        domain.catalog_feature_labels(),
    )
