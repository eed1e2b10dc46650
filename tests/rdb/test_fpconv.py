"""snaptool.rdb.fpconv (Grisu2 as Redis >= 7.2 / Valkey print doubles) and zset score digests.

The live tests store a few thousand random doubles as zset scores (ZADD with repr(), which the
server parses back to exactly that double) and compare DEBUG DIGEST-VALUE of each key with the
offline digest: on Valkey 8.1 that exercises fpconv_dtoa, on Redis 7.0 "%.17g".
"""

from __future__ import annotations

import math
import random
import struct

import pytest

from snaptool.engines.server import EngineServer
from snaptool.rdb import fpconv
from snaptool.rdb.digest import score_text, value_digest
from snaptool.rdb.fpconv import fpconv_dtoa

# Values the reference (§8.4) gives as Grisu2 results that differ from the shortest repr.
GRISU_NOT_SHORTEST = {
    583224.493447588: "5.832244934475881e+5",
    3.377064907195565e16: "33770649071955648",
}

# A list, not a dict: 0.0 and -0.0 are equal keys.
LAYOUT_EXAMPLES = [
    (0.0, "0"),
    (-0.0, "-0"),
    (math.inf, "inf"),
    (-math.inf, "-inf"),
    (1e7, "10000000"),
    (1.2345678901234568e20, "123456789012345680000"),
    (0.0001, "0.0001"),
    (1234567.5, "1234567.5"),
    (1e8, "1e+8"),
    (1e-7, "1e-7"),
    (0.1, "0.1"),
    (2.5, "2.5"),
    (-3.0, "-3"),
    (-1.5, "-1.5"),
    (100.0, "100"),
    (1e21, "1e+21"),
    (123e-20, "1.23e-18"),
    (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    *GRISU_NOT_SHORTEST.items(),
]


def _bits_to_double(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def random_doubles(seed: int, n: int) -> list[float]:
    """Doubles over varied exponents and shapes; finite, no zeros."""
    rnd = random.Random(seed)
    out: list[float] = list(GRISU_NOT_SHORTEST)
    while len(out) < n:
        shape = rnd.randrange(6)
        if shape == 0:  # uniform mantissa, decimal exponent over most of the range
            x = rnd.uniform(1.0, 10.0) * 10.0 ** rnd.randint(-300, 300)
        elif shape == 1:  # any bit pattern (subnormals included)
            x = _bits_to_double(rnd.getrandbits(64))
        elif shape == 2:  # "human" decimals with a few to 17 significant digits
            x = float(f"{rnd.randrange(1, 10 ** rnd.randint(1, 17))}e{rnd.randint(-25, 25)}")
        elif shape == 3:  # integers, some beyond 2^53 where Grisu2 gets creative
            x = float(rnd.randrange(1, 1 << rnd.randint(1, 80)))
        elif shape == 4:  # moderate magnitudes, where the layout switches between forms
            x = rnd.uniform(0, 1) * 10.0 ** rnd.randint(-9, 22)
        else:  # powers of two and their neighbours
            b = _bits_to_double(rnd.randint(1, 2046) << 52)
            x = math.nextafter(b, rnd.choice((0.0, math.inf))) if rnd.random() < 0.5 else b
        if math.isfinite(x) and x != 0.0:
            out.append(-x if rnd.random() < 0.3 else x)
    return out


# --------------------------------------------------------------------------- offline


@pytest.mark.parametrize("value,text", LAYOUT_EXAMPLES, ids=[repr(v) for v, _ in LAYOUT_EXAMPLES])
def test_reference_examples(value, text):
    assert fpconv_dtoa(value) == text


def test_grisu2_is_not_shortest_repr():
    for value, text in GRISU_NOT_SHORTEST.items():
        assert float(text) == value
        assert text.replace("e+5", "").replace(".", "") != repr(value).replace(".", "").replace("e+16", "")


def test_nan():
    assert fpconv_dtoa(math.nan) == "nan"
    assert fpconv_dtoa(-math.nan) == "-nan"


def test_cached_powers_are_nearest():
    """Each cached 10^k is the 64-bit significand nearest to it (fpconv's table is built that way)."""
    from fractions import Fraction

    assert len(fpconv._POWERS) == 87
    for i, (frac, exp) in enumerate(fpconv._POWERS):
        k = -348 + 8 * i
        assert 1 << 63 <= frac < 1 << 64
        exact = Fraction(10) ** k / Fraction(2) ** exp
        assert abs(frac - exact) <= Fraction(1, 2), k


def test_round_trip_random_bits():
    rnd = random.Random(11)
    for _ in range(20000):
        x = _bits_to_double(rnd.getrandbits(64))
        if math.isfinite(x):
            s = fpconv_dtoa(x)
            assert float(s) == x or (x == 0 and s in ("0", "-0")), (x, s)
            assert len(s) <= 25  # 17 digits, 7 zeros and a sign at most


def test_integer_shortcut_matches_full_algorithm():
    rnd = random.Random(5)
    values = [float(v) for v in range(1, 3000)]
    for p in range(1, 54):
        values += [float(2**p - 1), float(2**p), float(2**p + 1)]
    values += [float(10**p) for p in range(0, 16)] + [float(10**p * 7) for p in range(0, 15)]
    values += [float(rnd.randrange(1, 2**53)) for _ in range(20000)]
    values += [float(rnd.randrange(1, 10**10) * 10 ** rnd.randint(0, 6)) for _ in range(5000)]
    for v in values:
        if v < 2**53:
            for x in (v, -v):
                assert fpconv_dtoa(x) == fpconv._dtoa(x, shortcut=False), x


def test_differs_from_repr_layout():
    # The same digits as repr for these, but a different layout.
    assert fpconv_dtoa(1e-7) == "1e-7" != repr(1e-7)
    assert fpconv_dtoa(1.2345678901234568e20) != repr(1.2345678901234568e20)


# --------------------------------------------------------------------------- live


def _serve(engine):
    """A module-long client of a fresh server of ``engine`` (skipped when it is not found)."""
    with EngineServer(engine) as server, server.client(protocol=2, single_connection_client=True) as client:
        yield client


@pytest.fixture(scope="module")
def valkey(get_engine):
    yield from _serve(get_engine("valkey-8.1"))


@pytest.fixture(scope="module")
def redis70(get_engine):
    yield from _serve(get_engine("redis-7.0"))


N_DOUBLES = 8000


def _check_scores_one_per_key(client, score_format: str, doubles: list[float]) -> None:
    client.flushall()
    pipe = client.pipeline(transaction=False)
    keys = []
    for i, x in enumerate(doubles):
        key = b"z%d" % i
        keys.append(key)
        pipe.execute_command("ZADD", key, repr(x), b"m")
    pipe.execute()
    served = client.execute_command("DEBUG", "DIGEST-VALUE", *keys)
    mismatches = []
    for x, hexd in zip(doubles, served):
        ours = value_digest("zset", [(b"m", x)], has_expire=False, score_format=score_format, hexpire_marker=False)
        if ours.hex() != hexd.decode():
            mismatches.append((repr(x), score_text(x, score_format)))
    assert not mismatches, f"{len(mismatches)} of {len(doubles)} differ, e.g. {mismatches[:5]}"


def _check_scores_large_zsets(client, score_format: str, doubles: list[float]) -> None:
    """The same doubles in zsets big enough for the skiplist encoding."""
    client.flushall()
    keys, expected = [], []
    for start in range(0, len(doubles), 500):
        chunk = doubles[start:start + 500]
        key = b"big%d" % start
        members = [(b"m%d" % i, x) for i, x in enumerate(chunk)]
        client.execute_command("ZADD", key, *[a for m, x in members for a in (repr(x), m)])
        keys.append(key)
        expected.append(value_digest("zset", members, has_expire=False, score_format=score_format, hexpire_marker=False))
    served = [bytes.fromhex(h.decode()) for h in client.execute_command("DEBUG", "DIGEST-VALUE", *keys)]
    assert [e.hex() for e in expected] == [s.hex() for s in served]


def test_fpconv_scores_valkey(valkey):
    doubles = random_doubles(20250101, N_DOUBLES)
    # The sample must contain cases where Grisu2 and the shortest repr disagree on the digits.
    differs = sum(1 for x in doubles if float(fpconv_dtoa(x)) == x and _digits(fpconv_dtoa(x)) != _digits(repr(x)))
    assert differs >= len(GRISU_NOT_SHORTEST)
    _check_scores_one_per_key(valkey, "fpconv", doubles)


def test_fpconv_scores_valkey_skiplist(valkey):
    _check_scores_large_zsets(valkey, "fpconv", random_doubles(77, 1500))


def test_fpconv_special_scores_valkey(valkey):
    specials = [math.inf, -math.inf, 1e7, 1e8, 1e-7, 0.0001, 1234567.5, 1.2345678901234568e20, 2.0**53,
                2.0**53 + 2, 2.0**63, 2.0**64, 1e16, 1e17, 123456789012345678.0, 5e-324, 2.2250738585072014e-308]
    _check_scores_one_per_key(valkey, "fpconv", specials + [-x for x in specials])


def test_g17_scores_redis70(redis70):
    doubles = random_doubles(20250101, N_DOUBLES)
    _check_scores_one_per_key(redis70, "%.17g", doubles + [math.inf, -math.inf])


def test_g17_scores_redis70_skiplist(redis70):
    _check_scores_large_zsets(redis70, "%.17g", random_doubles(77, 1500))


def _digits(text: str) -> str:
    """The significant digits of a number's text."""
    mantissa = text.lower().lstrip("-").split("e")[0].replace(".", "")
    return mantissa.strip("0")
