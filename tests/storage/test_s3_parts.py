"""The multipart part sizes of an S3 upload: chosen from the expected size, and grown near S3's
10,000-part limit so an upload whose size was underestimated (or unknown) still completes."""

from __future__ import annotations

from snaptool.storage.repository import DEFAULT_PART_SIZE, part_size_for
from snaptool.storage.s3 import MIN_PART_SIZE
from snaptool.storage.s3upload import MAX_PART_SIZE, MAX_PARTS, STEADY_PARTS, part_size_at

GiB, TiB = 1 << 30, 1 << 40


def _capacity(base: int) -> int:
    """The most bytes one upload holds within S3's 10,000 parts."""
    return sum(part_size_at(n, base) for n in range(1, MAX_PARTS + 1))


def test_parts_stay_within_s3_limits_and_never_shrink() -> None:
    for base in (MIN_PART_SIZE, DEFAULT_PART_SIZE, part_size_for(TiB), part_size_for(48 * TiB)):
        sizes = [part_size_at(n, base) for n in range(1, MAX_PARTS + 1)]
        assert all(MIN_PART_SIZE <= s <= MAX_PART_SIZE for s in sizes)
        assert sizes == sorted(sizes)
        assert set(sizes[:STEADY_PARTS]) == {min(base, MAX_PART_SIZE)}  # one part in memory, as chosen


def test_an_upload_of_unknown_size_reaches_terabytes() -> None:
    # 8 MiB parts alone would stop below 80 GiB (S3 refuses part 10,001)
    assert DEFAULT_PART_SIZE * MAX_PARTS < 80 * GiB
    assert _capacity(DEFAULT_PART_SIZE) > 2.5 * TiB


def test_an_expected_size_fits_with_room_for_a_low_estimate() -> None:
    for expected, room in ((GiB, 100), (80 * GiB, 10), (TiB, 5), (5 * TiB, 2), (10 * TiB, 1.5), (48 * TiB, 1.01)):
        assert _capacity(part_size_for(expected)) >= expected * room, expected


def test_an_upload_as_large_as_expected_keeps_one_part_size() -> None:
    """Parts grow only past the expected size: a correct estimate never pays for bigger parts in
    memory (1 TiB stays at 132 MiB parts, not several hundred)."""
    for expected in (GiB, 80 * GiB, TiB, 5 * TiB):
        base = part_size_for(expected)
        assert -(-expected // base) <= STEADY_PARTS and part_size_at(STEADY_PARTS, base) == base
    assert part_size_for(TiB) == 132 << 20
