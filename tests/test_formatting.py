"""One way to print each kind of figure (common/formatting.py)."""

import math

from common.formatting import format_bytes, format_tps


def test_bytes_one_decimal_below_100_whole_numbers_above():
    assert format_bytes(4.9e9) == "4.9 GB"
    assert format_bytes(253e6) == "253 MB"
    assert format_bytes(0) == "0 B"
    assert format_bytes(math.nan) == format_bytes(None) == format_bytes(-1)


def test_speeds_whole_numbers_above_ten_unless_a_replys_own_record():
    assert format_tps(41.24) == "41 tok/s"
    assert format_tps(41.24, estimate=True) == "~41 tok/s"
    assert format_tps(41.24, precise=True) == "41.2 tok/s"
    assert format_tps(8.24) == "8.2 tok/s"
    assert format_tps(math.inf) == format_tps(0) == format_tps(None)
