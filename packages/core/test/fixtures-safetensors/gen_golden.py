"""Golden files written by the reference implementation (Python `safetensors` 0.8.0 + numpy).

Regenerate with:  python gen_golden.py   (needs `pip install safetensors numpy`)
The values here are repeated in test/safetensors-golden.test.ts; keep them in step.
"""
import numpy as np
from safetensors.numpy import save_file

# 1. Layout: one tensor per dtype numpy has, plus metadata. The TS writer must reproduce
#    this file byte for byte.
save_file(
    {
        "f64": np.array([1.5, -2.25, 1e300], dtype=np.float64),
        "f32": np.array([[1.0, -2.0, 0.5], [3.25, -0.0, 1e-45]], dtype=np.float32),
        "f16": np.array([1.0, 65504.0, -0.5, 5.960464477539063e-08], dtype=np.float16),
        "i64": np.array([-2147483648, 2147483647, 7], dtype=np.int64),
        "i32": np.array([-5, 0, 123456789], dtype=np.int32),
        "i16": np.array([-32768, 32767], dtype=np.int16),
        "u16": np.array([0, 65535], dtype=np.uint16),
        "i8": np.array([-128, 127, -1], dtype=np.int8),
        "u8": np.array([0, 255, 3], dtype=np.uint8),
        "bool": np.array([True, False, True], dtype=np.bool_),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    },
    "python-golden.safetensors",
    metadata={"format": "np"},  # one key: Rust writes a HashMap, so several keys have no fixed order
)

# 2. float32 -> float16 rounding as numpy does it (round to nearest, ties to even):
#    edge cases plus random values spread over every float16 exponent and beyond.
rng = np.random.default_rng(1234)
edges = np.array(
    [0.0, -0.0, 1.0, -1.0, 65504.0, 65519.0, 65520.0, 1e6, -1e6, 2.0**-24, 2.0**-25,
     1.5 * 2.0**-25, 2.0**-14, 2.0**-14 - 2.0**-24, 1 + 2.0**-11, 1 + 3 * 2.0**-11, 0.1,
     np.inf, -np.inf, 2.0**-26, 3.0e-8, 6.1e-5],
    dtype=np.float32,
)
mant = rng.uniform(1.0, 2.0, 3000)
expo = rng.integers(-28, 18, 3000)
sign = rng.choice([-1.0, 1.0], 3000)
rand = (sign * mant * 2.0**expo).astype(np.float32)
x = np.concatenate([edges, rand])
with np.errstate(over="ignore"):
    x16 = x.astype(np.float16)
save_file({"x": x, "x16": x16, "x16_as_f32": x16.astype(np.float32)}, "python-f16.safetensors")
