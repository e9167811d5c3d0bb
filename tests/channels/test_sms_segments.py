"""SMS segment counting: what a marketer sees next to an SMS body before sending."""

from __future__ import annotations

import pytest

from channels.sms_segments import SmsSegments, count_segments


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", SmsSegments("GSM-7", 0, 0)),
        ("Hello from the shop!", SmsSegments("GSM-7", 1, 20)),
        ("a" * 160, SmsSegments("GSM-7", 1, 160)),
        ("a" * 161, SmsSegments("GSM-7", 2, 161)),
        ("a" * 306, SmsSegments("GSM-7", 2, 306)),
        ("a" * 307, SmsSegments("GSM-7", 3, 307)),
        # Extension characters take two septets each.
        ("€" * 80, SmsSegments("GSM-7", 1, 80)),
        ("€" * 81, SmsSegments("GSM-7", 2, 81)),
        ("Nur 5€ heute: ÄÖÜ äöü ñ ß", SmsSegments("GSM-7", 1, 25)),
        ("Só 5€ hoje", SmsSegments("UCS-2", 1, 10)),  # ó is not GSM-7 (ò is)
        # One character outside GSM-7 turns the whole body into UCS-2.
        ("ç" * 70, SmsSegments("UCS-2", 1, 70)),
        ("a" * 69 + "ł", SmsSegments("UCS-2", 1, 70)),
        ("a" * 70 + "ł", SmsSegments("UCS-2", 2, 71)),
        ("a" * 133 + "ł", SmsSegments("UCS-2", 2, 134)),
        ("a" * 134 + "ł", SmsSegments("UCS-2", 3, 135)),
        # Emoji are two UTF-16 units.
        ("🛒" * 35, SmsSegments("UCS-2", 1, 35)),
        ("🛒" * 36, SmsSegments("UCS-2", 2, 36)),
    ],
)
def test_segments(body: str, expected: SmsSegments) -> None:
    assert count_segments(body) == expected


def test_escape_sequence_is_not_split_across_parts() -> None:
    # 152 septets, then "€" (2): it cannot straddle parts, so part one holds 152 and part two
    # starts with the euro sign: 152 + 2 + 152 more = 3 parts, not 2.
    body = "a" * 152 + "€" + "a" * 152
    assert sum(2 if c == "€" else 1 for c in body) == 306  # would fit 2 parts if split
    assert count_segments(body) == SmsSegments("GSM-7", 3, 305)


def test_surrogate_pair_is_not_split_across_parts() -> None:
    body = "ł" * 66 + "🛒" + "ł" * 66  # 134 units: 2 parts only if the emoji were split
    assert count_segments(body) == SmsSegments("UCS-2", 3, 133)
