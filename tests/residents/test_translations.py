"""The resident page, its messages and the consent admin read Chinese by default: every string they mark
for translation has a zh-Hans entry in the catalog (checked from the sources, so a new string without a
translation fails here rather than showing English to a resident)."""

from __future__ import annotations

import re
from pathlib import Path

import polib
import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
TEMPLATES = sorted((ROOT / "templates" / "residents").glob("*.html"))
SOURCES = [
    *sorted((ROOT / "residents").glob("*.py")),
    ROOT / "datadomain" / "residents.py",
    ROOT / "underwriting" / "admin_consent.py",
]

_TRANSLATE = re.compile(r'{%\s*translate\s+"((?:[^"\\]|\\.)*)"')
_BLOCK = re.compile(
    r"{%\s*blocktranslate(?:\s+with\s+(?P<with>.*?))?\s*%}(?P<text>.*?){%\s*endblocktranslate\s*%}", re.S
)
_GETTEXT = re.compile(r'\b_\(\s*"((?:[^"\\]|\\.)*)"')


def _template_msgids(text: str) -> set[str]:
    found = set(_TRANSLATE.findall(text))
    for match in _BLOCK.finditer(text):
        found.add(re.sub(r"{{\s*(\w+)\s*}}", r"%(\1)s", match.group("text")))
    return found


def _source_msgids() -> set[str]:
    found: set[str] = set()
    for path in TEMPLATES:
        found |= _template_msgids(path.read_text(encoding="utf-8"))
    for path in SOURCES:
        found |= set(_GETTEXT.findall(path.read_text(encoding="utf-8")))
    return found


def test_every_resident_string_has_a_chinese_translation() -> None:
    catalog = {entry.msgid: entry.msgstr for entry in polib.pofile(str(CATALOG)) if not entry.obsolete}
    msgids = _source_msgids()
    assert len(msgids) > 40  # the extraction itself works
    missing = sorted(m for m in msgids if not catalog.get(m))
    assert missing == []


def test_the_code_message_is_in_chinese_and_keeps_its_placeholders() -> None:
    catalog = {entry.msgid: entry.msgstr for entry in polib.pofile(str(CATALOG))}
    for msgid in (
        "Your bureau sign-in code is %(code)s (valid %(minutes)d minutes). Never share it.",
        "A request for your consent awaits you: sign in at %(url)s to approve or decline it.",
    ):
        translated = catalog[msgid]
        assert re.findall(r"%\(\w+\)\w", translated) == re.findall(r"%\(\w+\)\w", msgid)
        assert re.search(r"[\u4e00-\u9fff]", translated)


@pytest.mark.django_db
def test_the_sign_in_page_reads_chinese_by_default() -> None:
    page = Client().get("/residents/sign-in").content.decode()
    assert "居民身份证号码" in page
    assert "给我发验证码" in page
    assert "Send me a code" not in page
