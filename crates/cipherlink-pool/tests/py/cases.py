"""The round-trip catalog shared with tests/common/mod.rs (same order, same names).

Each entry is (name, value). After a round trip numpy arrays come back as
nested lists (ormsgpack serializes them natively), so `expected()` gives the
value a receiver should see.
"""
import math

import numpy as np

CASES = [
    ("str", "Hello Bob! This is Alice speaking."),
    ("str_unicode", "héllo ☃ 𝄞"),
    ("bytes", b"\x00\x01\xfe\xff"),
    ("zero", 0),
    ("minus_one", -1),
    ("u64_max", 2**64 - 1),
    ("i64_min", -(2**63)),
    ("big_2_64_p1", 2**64 + 1),
    ("big_m2_100", -(2**100)),
    ("float", 3.25),
    ("nan", math.nan),
    ("inf", math.inf),
    ("neg_inf", -math.inf),
    ("neg_zero", -0.0),
    ("none", None),
    ("true", True),
    ("false", False),
    ("list_nested", [1, [2.5, ["x", None]], []]),
    ("tuple", (1, "a", (2, b"b"))),
    ("dict", {"b": 1, "a": {"t": (1, 2), "l": [True]}}),
    ("np_int64_2d", np.array([[1, -2, 3], [2**62, 5, -6]], dtype=np.int64)),
    ("np_float64_2d", np.array([[1.5, -2.0], [math.inf, 0.25]], dtype=np.float64)),
    ("big_bytes", bytes(range(256)) * 400),
    # Lists the Rust decoder keeps compact (all ints in i64, all floats),
    # and ones it cannot (mixed, or a u64 above i64).
    ("ints", [1, -2, 300, 70000, 2**40, -(2**63), 2**63 - 1]),
    ("ints_long", list(range(-500, 500))),
    ("floats", [0.5, -1.0, math.inf, math.nan, -0.0, 1e300]),
    ("mixed_list", [1, 2, 3, None, 4.5, "x"]),
    ("ints_then_float", [1, 2, 2.5]),
    ("u64_list", [1, 2**64 - 1]),
    ("tuple_ints", (1, 2, 3)),
    ("np_int64_1d", np.arange(-100, 100, dtype=np.int64)),
]


def expected(value):
    """What a receiver gets back for a sent value."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def same(a, b):
    """Strict equality: same types all the way down, NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a.keys()) == list(b.keys()) and all(same(a[k], b[k]) for k in a)
    return a == b
