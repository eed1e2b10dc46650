"""Bech32 (BIP 173), the text encoding of age recipients (``age1…``) and identities
(``AGE-SECRET-KEY-1…``). age uses plain Bech32 without BIP 173's 90-character limit."""

from __future__ import annotations

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_VALUES = {c: i for i, c in enumerate(CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: list[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_GENERATOR):
            if (top >> i) & 1:
                checksum ^= gen
    return checksum


def _expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _regroup(data: bytes | list[int], src: int, dst: int, pad: bool) -> list[int]:
    acc = bits = 0
    out = []
    for value in data:
        acc = (acc << src) | value
        bits += src
        while bits >= dst:
            bits -= dst
            out.append((acc >> bits) & ((1 << dst) - 1))
    if pad and bits:
        out.append((acc << (dst - bits)) & ((1 << dst) - 1))
    elif not pad and (bits >= src or (acc << (dst - bits)) & ((1 << dst) - 1)):
        raise ValueError("invalid padding")
    return out


def encode(hrp: str, data: bytes) -> str:
    """``hrp`` + ``1`` + data + checksum, lowercase."""
    words = _regroup(data, 8, 5, True)
    polymod = _polymod(_expand(hrp) + words + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[w] for w in words + checksum)


def decode(text: str) -> tuple[str, bytes]:
    """(hrp, data) of a Bech32 string in one case; ValueError when it is not valid."""
    if text.lower() != text and text.upper() != text:
        raise ValueError("mixed case")
    text = text.lower()
    sep = text.rfind("1")
    if sep < 1 or len(text) - sep < 7 or any(not 33 <= ord(c) <= 126 for c in text):
        raise ValueError("not Bech32")
    hrp = text[:sep]
    try:
        words = [_VALUES[c] for c in text[sep + 1:]]
    except KeyError:
        raise ValueError("a character outside the Bech32 alphabet") from None
    if _polymod(_expand(hrp) + words) != 1:
        raise ValueError("bad checksum")
    return hrp, bytes(_regroup(words[:-6], 5, 8, False))
