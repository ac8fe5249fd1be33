"""Small numeric helpers shared by every block and the builder."""

from __future__ import annotations

__all__ = ["make_divisible"]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round a channel count to the nearest multiple of ``divisor``.

    The MobileNet rule (Sandler et al. 2018, MobileNetV2: widths in multiples of 8, as in
    its code release): round to the nearest multiple, at least ``min_value`` (default
    ``divisor``), and never more than ``1 - round_limit`` (10 %) below ``value``.
    """
    if divisor <= 0:
        raise ValueError(f"make_divisible: divisor must be positive, got {divisor}")
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return int(rounded)
