"""How many SMS segments a body takes, for review screens and cost estimates.

A body that fits the GSM-7 alphabet (3GPP TS 23.038) costs 7 bits a character, its extension
characters (`^ { } \\ [ ~ ] | €` and form feed) two: 160 septets in one segment, 153 in each
part of a concatenated message (the user data header takes the rest). Any other character makes
the whole body UCS-2: 70 UTF-16 units in one segment, 67 per part, a character outside the BMP
(most emoji) taking two. Carriers do not split an escape sequence or a surrogate pair across
parts, so segments are packed that way here too.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

Encoding = Literal["GSM-7", "UCS-2"]
LIMITS: dict[str, tuple[int, int]] = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


class SmsSegments(NamedTuple):
    encoding: Encoding
    segments: int
    characters: int


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _units(text: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def count_segments(text: str) -> SmsSegments:
    """(encoding, segments, characters) of an SMS body."""
    encoding: Encoding = "GSM-7" if is_gsm7(text) else "UCS-2"
    units = _units(text, encoding)
    single, part = LIMITS[encoding]
    if sum(units) <= single:
        return SmsSegments(encoding, 1 if text else 0, len(text))
    segments, used = 1, 0
    for cost in units:
        if used + cost > part:
            segments, used = segments + 1, 0
        used += cost
    return SmsSegments(encoding, segments, len(text))
