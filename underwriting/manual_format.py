"""The rating-manual document: a versioned YAML file, parsed and validated with errors that name the
field and the line.

Format (see underwriting/manuals/*.yaml for the built-in ones)::

    slug: charlson-acci            # lower-case letters, digits, hyphens
    version: 1                     # positive integer; a new version for every change
    title: ...                     # text, or one text per language (below)
    owner: builtin                 # or the slug of the insurer that owns it
    features:                      # catalog feature names with integer weights (may be negative)
      - {name: charlson.chf, weight: 1}
    tiers:                         # ascending; max_score inclusive; the last has no max_score
      - {code: A, label: Preferred, max_score: 1, decision: accept}
      - {code: D, label: Decline, decision: decline}

``title`` and each tier's ``label`` are either one text or one text per language, keyed by BCP 47 tag and
including ``en`` (the text the API, webhooks and the audit trail carry)::

    title: {en: Example manual, zh-Hans: 示例手册}
    tiers:
      - {code: A, label: {en: Preferred, zh-Hans: 优选体}, max_score: 1, decision: accept}

The portal shows them in the user's language (``title_in``, ``label_in``), falling back to ``en``.

A score s falls in the first tier whose ``max_score >= s``. The thresholds handed to the encrypted
comparison protocol are the ``max_score`` values of every tier but the last, so a manual with k+1
tiers costs exactly k comparisons.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

import yaml

DECISIONS = ("accept", "rate", "postpone", "refer", "decline")
Decision = Literal["accept", "rate", "postpone", "refer", "decline"]
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
FEATURE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
REFERENCE_LANGUAGE = "en"
MAX_WEIGHT = 10_000
MAX_FEATURES = 100


@dataclass(frozen=True)
class ManualFeature:
    name: str
    weight: int


def in_language(texts: dict[str, str], default: str, language: str | None) -> str:
    """The text for ``language`` (a Django language code such as ``zh-hans``, or a BCP 47 tag), else
    ``default``. Tags compare case-insensitively; ``zh`` finds ``zh-Hans`` and ``zh-hans`` finds ``zh``."""
    if not language or not texts:
        return default
    wanted = language.lower()
    by_tag = {tag.lower(): text for tag, text in texts.items()}
    if wanted in by_tag:
        return by_tag[wanted]
    for tag, text in by_tag.items():
        if tag.startswith(wanted + "-") or wanted.startswith(tag + "-"):
            return text
    return default


@dataclass(frozen=True)
class ManualTier:
    code: str
    label: str
    max_score: int | None
    decision: Decision
    table_rating: str | None = None
    labels: dict[str, str] = field(default_factory=dict)  # language tag -> label, ``en`` among them

    def label_in(self, language: str | None) -> str:
        return in_language(self.labels, self.label, language)


@dataclass(frozen=True)
class ManualDocument:
    slug: str
    version: int
    title: str
    owner: str
    features: tuple[ManualFeature, ...]
    tiers: tuple[ManualTier, ...]
    titles: dict[str, str] = field(default_factory=dict)  # language tag -> title, ``en`` among them

    def title_in(self, language: str | None) -> str:
        return in_language(self.titles, self.title, language)

    def tier(self, code: str) -> ManualTier | None:
        return next((tier for tier in self.tiers if tier.code == code), None)

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def weights(self) -> list[int]:
        return [feature.weight for feature in self.features]

    @property
    def thresholds(self) -> list[int]:
        return [tier.max_score for tier in self.tiers if tier.max_score is not None]

    def tier_for_index(self, index: int) -> ManualTier:
        return self.tiers[index]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ManualFormatError(ValueError):
    """Every problem found in a manual document, each naming its field path and line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def content_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_manual(text: str, *, known_features: set[str] | None = None) -> ManualDocument:
    """Parse and validate a manual. ``known_features`` (the feature catalog) is checked when given."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ManualFormatError([f"document{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    if root is None:
        raise ManualFormatError(["document (line 1): empty"])
    lines: dict[str, int] = {}
    _index_lines(root, "", lines)
    data = yaml.safe_load(text)
    return _Validator(data, lines, known_features).document()


def _index_lines(node: yaml.Node, path: str, lines: dict[str, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = f"{path}.{key_node.value}" if path else str(key_node.value)
            lines[child] = key_node.start_mark.line + 1
            _index_lines(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, f"{path}[{index}]", lines)


class _Validator:
    def __init__(self, data: object, lines: dict[str, int], known_features: set[str] | None) -> None:
        self.data = data
        self.lines = lines
        self.known = known_features
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        """Record a problem at ``path``; a missing field is reported at its parent's line."""
        where = path
        line = self.lines.get(where)
        while line is None and where:
            where = where.rsplit(".", 1)[0] if "." in where else where.split("[", 1)[0] if "[" in where else ""
            line = self.lines.get(where)
        self.problems.append(f"{path or 'document'} (line {line or 1}): {message}")

    def document(self) -> ManualDocument:
        if not isinstance(self.data, dict):
            raise ManualFormatError(["document (line 1): must be a mapping with slug, version, title, ..."])
        data = cast(dict[str, Any], self.data)
        allowed = {"slug", "version", "title", "owner", "features", "tiers", "description", "references"}
        for key in data:
            if key not in allowed:
                self.problem(str(key), f"unknown field; allowed: {', '.join(sorted(allowed))}")
        slug = self.string(data, "slug")
        if slug and not SLUG_PATTERN.match(slug):
            self.problem("slug", "use 2-63 lower-case letters, digits and hyphens")
        version = self.integer(data, "version", minimum=1)
        title, titles = self.texts(data, "title")
        owner = self.string(data, "owner")
        if owner and owner != "builtin" and not SLUG_PATTERN.match(owner):
            self.problem("owner", "must be 'builtin' or an insurer slug")
        features = self.features(data.get("features"))
        tiers = self.tiers(data.get("tiers"))
        if self.problems:
            raise ManualFormatError(self.problems)
        return ManualDocument(
            slug=slug,
            version=version,
            title=title,
            owner=owner,
            features=tuple(features),
            tiers=tuple(tiers),
            titles=titles,
        )

    def string(self, data: dict[str, Any], key: str, *, prefix: str = "", required: bool = True) -> str:
        path = f"{prefix}{key}"
        value = data.get(key)
        if value is None:
            if required:
                self.problem(path, "is required")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.problem(path, "must be a non-empty string")
            return ""
        return value.strip()

    def texts(self, data: dict[str, Any], key: str, *, prefix: str = "") -> tuple[str, dict[str, str]]:
        """A required text, given once or per language: the ``en`` text and every language's."""
        value = data.get(key)
        if not isinstance(value, dict):
            text = self.string(data, key, prefix=prefix)
            return text, {}
        path = f"{prefix}{key}"
        texts: dict[str, str] = {}
        for tag, text in value.items():
            if not isinstance(tag, str) or not LANGUAGE_TAG.match(tag):
                self.problem(path, f"'{tag}' is not a language tag such as en or zh-Hans")
            elif not isinstance(text, str) or not text.strip():
                self.problem(f"{path}.{tag}", "must be a non-empty string")
            else:
                texts[tag] = text.strip()
        if REFERENCE_LANGUAGE not in value:
            self.problem(path, f"give the text in {REFERENCE_LANGUAGE} too")
        return texts.get(REFERENCE_LANGUAGE, ""), texts

    def integer(self, data: dict[str, Any], key: str, *, prefix: str = "", minimum: int | None = None) -> int:
        path = f"{prefix}{key}"
        value = data.get(key)
        if value is None:
            self.problem(path, "is required")
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, "must be an integer")
            return 0
        if minimum is not None and value < minimum:
            self.problem(path, f"must be at least {minimum}")
        return value

    def features(self, value: object) -> list[ManualFeature]:
        if not isinstance(value, list) or not value:
            self.problem("features", "must be a non-empty list of {name, weight}")
            return []
        if len(value) > MAX_FEATURES:
            self.problem("features", f"at most {MAX_FEATURES} features")
        features: list[ManualFeature] = []
        seen: set[str] = set()
        for index, item in enumerate(value):
            prefix = f"features[{index}]."
            if not isinstance(item, dict):
                self.problem(f"features[{index}]", "must be a mapping with name and weight")
                continue
            name = self.string(item, "name", prefix=prefix)
            weight = self.integer(item, "weight", prefix=prefix)
            if abs(weight) > MAX_WEIGHT:
                self.problem(f"{prefix}weight", f"must be between -{MAX_WEIGHT} and {MAX_WEIGHT}")
            if name and not FEATURE_PATTERN.match(name):
                self.problem(f"{prefix}name", "must be a catalog feature name such as 'charlson.chf'")
            elif name and self.known is not None and name not in self.known:
                self.problem(f"{prefix}name", f"'{name}' is not in the feature catalog")
            if name in seen:
                self.problem(f"{prefix}name", f"'{name}' is listed twice")
            seen.add(name)
            features.append(ManualFeature(name=name, weight=weight))
        return features

    def tiers(self, value: object) -> list[ManualTier]:
        if not isinstance(value, list) or len(value) < 2:
            self.problem("tiers", "must list at least two tiers, in ascending order")
            return []
        tiers: list[ManualTier] = []
        codes: set[str] = set()
        previous: int | None = None
        for index, item in enumerate(value):
            prefix = f"tiers[{index}]."
            if not isinstance(item, dict):
                self.problem(f"tiers[{index}]", "must be a mapping with code, label, max_score and decision")
                continue
            code = self.string(item, "code", prefix=prefix)
            if code in codes:
                self.problem(f"{prefix}code", f"'{code}' is used twice")
            codes.add(code)
            label, labels = self.texts(item, "label", prefix=prefix)
            last = index == len(value) - 1
            max_score = self.max_score(item, prefix, last=last, previous=previous)
            previous = max_score if max_score is not None else previous
            decision = self.string(item, "decision", prefix=prefix)
            if decision and decision not in DECISIONS:
                self.problem(f"{prefix}decision", f"must be one of {', '.join(DECISIONS)}")
            table_rating = self.string(item, "table_rating", prefix=prefix, required=False) or None
            tiers.append(ManualTier(code, label, max_score, cast(Decision, decision), table_rating, labels))
        return tiers

    def max_score(self, item: dict[str, Any], prefix: str, *, last: bool, previous: int | None) -> int | None:
        if last:
            if item.get("max_score") is not None:
                self.problem(f"{prefix}max_score", "the last tier takes every higher score: leave max_score out")
            return None
        value = self.integer(item, "max_score", prefix=prefix)
        if previous is not None and value <= previous:
            self.problem(f"{prefix}max_score", f"must be greater than the previous tier's ({previous})")
        return value
