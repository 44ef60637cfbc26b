"""gemmlowp's fixed-point operations with Python ints, written from their definitions.

Python ints never overflow and ``//`` always floors, so each definition is spelled out
with no reliance on machine behaviour: this is the yardstick the vectorized numpy, Numba
and CUDA requantizations are checked against, bit for bit.

* ``SaturatingRoundingDoublingHighMul(a, b)``: the integer nearest to ``a * b / 2^31``,
  ties *upwards* (``floor(a * b / 2^31 + 1/2)``, what ARM's ``VQRDMULH`` computes:
  gemmlowp's nudge ``1 - 2^30`` for negative products, then C's truncating division,
  sends ``-0.5`` to 0 and ``-1.5`` to -1, while ``+0.5`` goes to 1); ``(-2^31) * (-2^31)``
  (whose true result ``2^31`` does not fit) is ``2^31 - 1``.
* ``RoundingDivideByPOT(x, e)``: the integer nearest to ``x / 2^e``, ties away from zero.
"""

from __future__ import annotations

from fractions import Fraction

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def round_half_away(f: Fraction) -> int:
    """The integer nearest to ``f``; halves go away from zero."""
    n = abs(f)
    r = int(n)                      # floor of |f|
    if n - r >= Fraction(1, 2):
        r += 1
    return r if f >= 0 else -r


def floor(f: Fraction) -> int:
    return f.numerator // f.denominator


def srdhm(a: int, b: int) -> int:
    if a == INT32_MIN and b == INT32_MIN:
        return INT32_MAX
    return floor(Fraction(a * b, 1 << 31) + Fraction(1, 2))


def rdbpot(x: int, exponent: int) -> int:
    return round_half_away(Fraction(x, 1 << exponent))


def requantize(acc: int, m0: int, shift: int, zero_point: int, q_min: int = -128,
               q_max: int = 127, relu: bool = False) -> int:
    if shift > 0:
        acc = min(max(acc * (1 << shift), INT32_MIN), INT32_MAX)
        right = 0
    else:
        right = -shift
    y = rdbpot(srdhm(acc, m0), right) + zero_point
    lo = max(q_min, zero_point) if relu else q_min
    return min(max(y, lo), q_max)


def quantize_multiplier(m: float) -> tuple[int, int]:
    """From the definition: the largest-precision ``m0 in [2^30, 2^31)`` and ``shift`` with
    ``m0 * 2^(shift - 31)`` nearest to ``m`` (exact rational arithmetic)."""
    if m == 0:
        return 0, 0
    f = Fraction(m)
    shift = 0
    while f >= 1:                   # normalise f = m / 2^shift into [1/2, 1)
        f /= 2
        shift += 1
    while f < Fraction(1, 2):
        f *= 2
        shift -= 1
    m0 = round_half_away(f * (1 << 31))
    if m0 == 1 << 31:
        m0, shift = 1 << 30, shift + 1
    if shift < -31:
        return 0, 0
    return m0, shift
