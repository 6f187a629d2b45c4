"""How an SMS text travels: GSM-7 or UCS-2, and how many segments (billed messages) it takes.

GSM 03.38: a text made only of the basic character set and its extension table is sent in GSM-7,
where a basic character takes one septet and an extension character (`^ { } [ ] ~ | \\ €` and form
feed) two (an escape and the character). A single message holds 160 septets; a longer text is
split into segments of 153 (the rest carries the concatenation header), and an escape pair is
never split across two segments. Any other character makes the whole text UCS-2: 70 UTF-16 code
units in one message, 67 per segment when concatenated, a surrogate pair (an emoji) never split.
"""

import re
from dataclasses import dataclass
from typing import Literal

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")
# A text of basic characters only (the common case) is measured by its length, checked at C speed.
_BASIC_ONLY = re.compile("[" + re.escape("".join(sorted(GSM_BASIC))) + "]*")

Encoding = Literal["GSM-7", "UCS-2"]
# (units in a single message, units per segment of a concatenated message)
LIMITS: dict[str, tuple[int, int]] = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


@dataclass(frozen=True)
class SmsEncoding:
    encoding: Encoding
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int  # 0 for an empty text


def _gsm_units(char: str) -> int | None:
    if char in GSM_BASIC:
        return 1
    if char in GSM_EXTENSION:
        return 2
    return None


def sms_encoding(text: str) -> SmsEncoding:
    """The encoding of `text`, its length in that encoding's units and its segment count."""
    if _BASIC_ONLY.fullmatch(text):  # one septet per character: segments of 153 when over 160
        single, per_segment = LIMITS["GSM-7"]
        units = len(text)
        segments = 0 if not units else 1 if units <= single else -(-units // per_segment)
        return SmsEncoding("GSM-7", units, segments)
    sizes: list[int] = []
    for char in text:
        size = _gsm_units(char)
        if size is None:
            return _measure("UCS-2", [2 if ord(c) > 0xFFFF else 1 for c in text])
        sizes.append(size)
    return _measure("GSM-7", sizes)


def _measure(encoding: Encoding, sizes: list[int]) -> SmsEncoding:
    """Segments of characters of the given sizes, filled greedily, no character split."""
    total = sum(sizes)
    single, per_segment = LIMITS[encoding]
    if total == 0:
        return SmsEncoding(encoding, 0, 0)
    if total <= single:
        return SmsEncoding(encoding, total, 1)
    segments, used = 1, 0
    for size in sizes:
        if used + size > per_segment:
            segments += 1
            used = 0
        used += size
    return SmsEncoding(encoding, total, segments)


def too_many_segments(text: str, limit: int) -> str | None:
    """Why `text` cannot go out as at most `limit` segments, or None when it can.

    A rendered body can be as long as a render allows (a million characters), and counting its
    segments walks every character: a text longer than `limit` segments could hold even in the
    densest encoding (GSM-7, one septet per character) is refused by its length alone.
    """
    single, per_segment = LIMITS["GSM-7"]
    most = single if limit == 1 else limit * per_segment
    if len(text) > most:
        return f"the SMS has {len(text):,} characters, more than {limit} segment(s) can hold"
    segments = sms_encoding(text).segments
    if segments > limit:
        return f"the SMS takes {segments} segments; at most {limit} are allowed"
    return None
