"""``fpconv_dtoa``: how Redis >= 7.2 and every Valkey turn a double into text.

Redis 7.2 replaced ``snprintf("%.17g")`` with the vendored *fpconv* library (night-shift/fpconv,
Grisu2 after Florian Loitsch) for zset scores in ``DEBUG DIGEST`` (and elsewhere). Its output is
**not** Python's shortest ``repr``:

* the digits come from Grisu2, which is not guaranteed to find the shortest (or closest)
  digit string: 583224.493447588 prints as ``5.832244934475881e+5`` and 3.377064907195565e16
  as ``33770649071955648``;
* the layout rules differ (``1e+8``, ``1e-7``, ``123456789012345680000``, no zero-padded
  exponent). See the RDB format reference §8.4.

This module is a from-scratch Python rendition of the algorithm, written to be bit-exact with
the C code, including its 64-bit integer arithmetic (products are rounded the way fpconv's
``multiply`` rounds them, wrap-around is reproduced with masks). The cached powers of ten are
computed at import time with big integers, rounded to nearest, which reproduces fpconv's table.

Only :func:`fpconv_dtoa` is public.
"""

from __future__ import annotations

import struct

__all__ = ["fpconv_dtoa"]

_M64 = (1 << 64) - 1
_FRACMASK = (1 << 52) - 1
_HIDDEN = 1 << 52
_EXPBIAS = 1023 + 52

_unpack_bits = struct.Struct("<Q").unpack
_pack_double = struct.Struct("<d").pack

# Cached powers of ten: 10^k for k = -348, -340, ..., 340 as (frac, exp) with
# 2^63 <= frac < 2^64 and frac * 2^exp ~= 10^k (frac rounded to nearest).
_FIRST_POWER = -348
_STEP_POWERS = 8
_NPOWERS = 87
_EXP_MIN = -60
_EXP_MAX = -32
_ONE_LOG_TEN = 0.30102999566398114


def _normalized_power_of_ten(k: int) -> tuple[int, int]:
    num, den = (10**k, 1) if k >= 0 else (1, 10**-k)
    # Pick exp so that num / (den * 2^exp) lies in [2^63, 2^64).
    exp = num.bit_length() - den.bit_length() - 64
    while True:
        if exp >= 0:
            n, d = num, den << exp
        else:
            n, d = num << -exp, den
        q, r = divmod(n, d)
        if q >= 1 << 64:
            exp += 1
            continue
        if q < 1 << 63:
            exp -= 1
            continue
        if 2 * r >= d:  # round to nearest, halves up
            q += 1
            if q == 1 << 64:
                q >>= 1
                exp += 1
        return q, exp


_POWERS = tuple(_normalized_power_of_ten(_FIRST_POWER + i * _STEP_POWERS) for i in range(_NPOWERS))
_POWER_FRAC = tuple(p[0] for p in _POWERS)
_POWER_EXP = tuple(p[1] for p in _POWERS)

# Divisors used while emitting the integral part (10^9 down to 1) and the fractional-part unit
# table (fpconv walks ``tens`` backwards from 10 while generating fractional digits).
_INT_DIVISORS = tuple(10**i for i in range(9, -1, -1))
_TENS_BACKWARD = tuple(10**i for i in range(1, 20))  # 10, 100, ..., 10^19

_TWO53 = 9007199254740992.0


def _cached_power(exp: int) -> tuple[int, int, int]:
    """(frac, exp, k) of the cached 10^k for which exp + its exp + 64 lands in [-60, -32]."""
    approx = int(-(exp + _NPOWERS) * _ONE_LOG_TEN)  # C double -> int truncates toward zero
    num = approx - _FIRST_POWER
    idx = num // _STEP_POWERS if num >= 0 else -((-num) // _STEP_POWERS)
    while True:
        current = exp + _POWER_EXP[idx] + 64
        if current < _EXP_MIN:
            idx += 1
        elif current > _EXP_MAX:
            idx -= 1
        else:
            return _POWER_FRAC[idx], _POWER_EXP[idx], _FIRST_POWER + idx * _STEP_POWERS


# The selection above depends only on the exponent of the upper boundary, which ranges over
# about 2,100 values: resolve them all once so that each conversion is a dictionary lookup.
_CACHED_BY_EXP = {e: _cached_power(e) for e in range(-1140, 961)}


def _round_digit(digits: int, delta: int, rem: int, kappa: int, frac: int) -> int:
    """fpconv's last-digit correction; ``digits`` is the digit string held as an integer."""
    while (
        rem < frac
        and ((delta - rem) & _M64) >= kappa
        and (((rem + kappa) & _M64) < frac or frac - rem > ((rem + kappa - frac) & _M64))
    ):
        digits -= 1
        rem = (rem + kappa) & _M64
    return digits


def _grisu2(bits: int) -> tuple[int, int]:
    """Digits (as an integer, no leading zeros) and decimal exponent K of a finite non-zero
    positive double given by its IEEE bits (sign bit ignored)."""
    frac = bits & _FRACMASK
    bexp = (bits >> 52) & 0x7FF
    if bexp:
        frac += _HIDDEN
        exp = bexp - _EXPBIAS
    else:
        exp = 1 - _EXPBIAS

    # Boundaries m+ and m-, both brought to the exponent of the normalized upper one.
    upper = (frac << 1) + 1
    shift = 64 - upper.bit_length()
    upper <<= shift
    upper_exp = exp - 1 - shift
    l_shift = 2 if frac == _HIDDEN else 1
    lower = (frac << l_shift) - 1
    lower <<= (exp - l_shift) - upper_exp

    # Normalize w itself (top bit at position 63).
    shift = 64 - frac.bit_length()
    w = frac << shift

    cached = _CACHED_BY_EXP.get(upper_exp)
    cp_frac, cp_exp, k = cached if cached is not None else _cached_power(upper_exp)
    half = 1 << 63
    w = (w * cp_frac + half) >> 64
    upper = ((upper * cp_frac + half) >> 64) - 1
    lower = ((lower * cp_frac + half) >> 64) + 1
    e = -(upper_exp + cp_exp + 64)  # -one.exp, in [32, 60]

    # generate_digits
    K = -k
    wfrac = (upper - w) & _M64
    delta = (upper - lower) & _M64
    one = 1 << e
    mask = one - 1
    part1 = upper >> e
    part2 = upper & mask

    digits = 0
    # fpconv walks the ten divisors 10^9 .. 1, decrementing kappa each time. While part1 is below
    # the divisor it emits nothing and cannot stop (the remainder is all of upper, more than
    # delta), so start directly at the divisor matching part1's number of digits.
    kappa = len(str(part1)) if part1 else 0
    for div in _INT_DIVISORS[10 - kappa:]:
        digit = part1 // div
        digits = digits * 10 + digit
        part1 -= digit * div
        kappa -= 1
        tmp = (part1 << e) + part2
        if tmp <= delta:
            K += kappa
            return _round_digit(digits, delta, tmp, (div << e) & _M64, wfrac), K

    unit_idx = 0
    while True:
        part2 = (part2 * 10) & _M64
        delta = (delta * 10) & _M64
        kappa -= 1
        digits = digits * 10 + (part2 >> e)
        part2 &= mask
        if part2 < delta:
            K += kappa
            return _round_digit(digits, delta, part2, one, (wfrac * _TENS_BACKWARD[unit_idx]) & _M64), K
        unit_idx += 1


def _emit(ds: str, K: int, neg: bool) -> str:
    """fpconv's layout of digit string ds times 10^K."""
    n = len(ds)
    exp = K + n - 1
    if exp < 0:
        exp = -exp
    if K >= 0 and exp < n + 7:
        return ds + "0" * K if K else ds
    if K < 0 and (K > -7 or exp < 4):
        offset = n + K
        if offset <= 0:
            return "0." + "0" * -offset + ds
        return ds[:offset] + "." + ds[offset:]
    # Scientific notation.
    limit = 17 if neg else 18
    if n > limit:
        n = limit
    mantissa = ds[0] + "." + ds[1:n] if n > 1 else ds[0]
    return mantissa + ("e-" if K + n - 1 < 0 else "e+") + str(exp)


def fpconv_dtoa(value: float) -> str:
    """The text Redis >= 7.2 / Valkey's ``fpconv_dtoa`` writes for ``value``.

    ``0.0`` -> ``0``, ``-0.0`` -> ``-0``, infinities -> ``inf`` / ``-inf``, NaN -> ``nan``
    (``-nan`` with the sign bit set), like the C function.
    """
    return _dtoa(value, shortcut=True)


def _dtoa(value: float, *, shortcut: bool) -> str:
    """fpconv_dtoa; ``shortcut=False`` runs Grisu2 even for integers (the tests compare both)."""
    value = float(value)
    (bits,) = _unpack_bits(_pack_double(value))
    neg = bits >> 63 == 1
    sign = "-" if neg else ""
    if value == 0.0:
        return sign + "0"
    if bits & 0x7FF0000000000000 == 0x7FF0000000000000:
        return sign + ("nan" if bits & _FRACMASK else "inf")
    a = -value if neg else value
    if shortcut and a < _TWO53 and a.is_integer():
        # Integers below 2^53 are exact and their rounding interval is narrower than one unit,
        # so Grisu2 yields exactly their decimal digits (trailing zeros folded into K).
        s = str(int(a))
        ds = s.rstrip("0")
        return sign + _emit(ds, len(s) - len(ds), neg)
    digits, K = _grisu2(bits)
    return sign + _emit(str(digits), K, neg)
