"""The plaintext reference evaluator of a rating manual.

Used only by tests (to check the encrypted pipeline gives the same tier) and by the in-domain, audited,
four-eyes explanation of one decision (``underwriting.services.explain``: the admin and the
``explain_subject`` command). Production scoring never computes a plaintext score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from underwriting.manual_format import ManualDocument, ManualTier, parse_manual

BUILTIN_DIR = Path(__file__).resolve().parent / "manuals"


@dataclass(frozen=True)
class Evaluation:
    score: int
    tier_index: int
    tier: ManualTier
    contributions: dict[str, int]


def evaluate(document: ManualDocument, features: dict[str, int]) -> Evaluation:
    """score = sum(weight * value); the tier is the first whose max_score >= score."""
    contributions = {f.name: f.weight * features.get(f.name, 0) for f in document.features}
    score = sum(contributions.values())
    index = tier_index(document.thresholds, score)
    return Evaluation(score=score, tier_index=index, tier=document.tiers[index], contributions=contributions)


def tier_index(thresholds: list[int], score: int) -> int:
    """How many thresholds the score exceeds: the index of the first tier with max_score >= score."""
    return sum(1 for threshold in thresholds if score > threshold)


def builtin_manual_paths() -> list[Path]:
    return sorted(BUILTIN_DIR.glob("*.yaml"))


def builtin_documents() -> dict[str, ManualDocument]:
    return {
        doc.slug: doc for doc in (parse_manual(path.read_text(encoding="utf-8")) for path in builtin_manual_paths())
    }
