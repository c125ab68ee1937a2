"""Per-stage width multipliers shared by the CNN families (what the "-R" rule edits)."""

from __future__ import annotations

from collections.abc import Sequence

from tune_robust.errors import ConfigError


def stage_channels(family: str, base: Sequence[int], widths: Sequence[float]) -> list[int]:
    """``round(base_i * widths_i)`` channels per stage, with a clear error for a wrong-length tuple."""
    if len(widths) != len(base):
        raise ConfigError(
            f"{family}: widths needs {len(base)} per-stage multipliers (one per stage), got {list(widths)}"
        )
    if any(not w > 0 for w in widths):
        raise ConfigError(f"{family}: widths must be > 0, got {list(widths)}")
    return [max(1, round(b * w)) for b, w in zip(base, widths, strict=True)]
