"""Prints exact-byte msgpack vectors from the installed tno.mpc.communication.

Run with a 5.x interpreter: the hex is what the package's Serializer produces
for each value (the 4.x inline object is byte-identical, see tno-wire.md 3a).
The Rust unit tests in src/codec_vectors.rs pin these lines.
"""
import math
import warnings

import numpy as np
from tno.mpc.communication.packers.serialization import Serializer

warnings.simplefilter("ignore")

VALUES = [
    ("nil", None),
    ("false", False),
    ("true", True),
    ("zero", 0),
    ("minus_one", -1),
    ("pfix_max", 127),
    ("u8_128", 128),
    ("u8_255", 255),
    ("u16_256", 256),
    ("u16_max", 65535),
    ("u32_65536", 65536),
    ("u32_max", 2**32 - 1),
    ("u64_2_32", 2**32),
    ("i64_max", 2**63 - 1),
    ("u64_2_63", 2**63),
    ("u64_max", 2**64 - 1),
    ("nfix_min", -32),
    ("i8_m33", -33),
    ("i8_min", -128),
    ("i16_m129", -129),
    ("i16_min", -32768),
    ("i32_m32769", -32769),
    ("i32_min", -(2**31)),
    ("i64_m2_31_1", -(2**31) - 1),
    ("i64_min", -(2**63)),
    ("big_2_64", 2**64),
    ("big_2_64_p1", 2**64 + 1),
    ("big_2_100", 2**100),
    ("big_m2_100", -(2**100)),
    ("big_m2_64", -(2**64)),
    ("big_m2_63_m1", -(2**63) - 1),
    ("big_m2_71", -(2**71)),
    ("big_2_200_m1", 2**200 - 1),
    ("f_3_25", 3.25),
    ("f_zero", 0.0),
    ("f_negzero", -0.0),
    ("f_inf", math.inf),
    ("f_neginf", -math.inf),
    ("f_nan", math.nan),
    ("f_tiny", 5e-324),
    ("str_empty", ""),
    ("str_hi", "hi"),
    ("str_31", "a" * 31),
    ("str_32", "a" * 32),
    ("str_255", "b" * 255),
    ("str_256", "c" * 256),
    ("str_utf8", "héllo ☃"),
    ("bytes_empty", b""),
    ("bytes_ab", b"ab"),
    ("bytes_256", bytes(range(256))),
    ("list_empty", []),
    ("list_nested", [1, [2, [3, None]], "x"]),
    ("list_16", list(range(16))),
    ("tuple_1a", (1, "a")),
    ("tuple_empty", ()),
    ("dict_empty", {}),
    ("dict_order", {"b": 1, "a": [True, 2.5]}),
    ("dict_16", {f"k{i:02}": i for i in range(16)}),
    ("nested_mix", {"t": (1, (2, 3)), "l": [{"x": b"\x00"}], "n": None}),
    ("np_i64_2d", np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)),
    ("np_f64_2d", np.array([[1.5, -2.0], [math.inf, 0.0]], dtype=np.float64)),
    ("np_f32_1d", np.array([1.5, 2.0], dtype=np.float32)),
    ("np_bool_1d", np.array([True, False])),
    ("np_i64_scalar", np.int64(7)),
    ("np_obj_1d", np.array([1, "a"], dtype=object)),
    ("np_0d", np.array(5)),
    ("user_dict_type_data", {"type": "tuple", "data": [1]}),
]

try:
    import gmpy2

    VALUES += [
        ("mpz_0", gmpy2.mpz(0)),
        ("mpz_5", gmpy2.mpz(5)),
        ("mpz_m5", gmpy2.mpz(-5)),
        ("mpz_2_100", gmpy2.mpz(2**100)),
    ]
except ImportError:
    pass

for name, value in VALUES:
    print(name, Serializer.serialize(value).hex())
