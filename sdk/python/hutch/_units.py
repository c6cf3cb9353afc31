"""Resource strings: cpu "1" / "0.5" / "250m", memory "512Mi" / "2Gi",
durations "1h" / "30m" / "1h30m" / seconds."""
from __future__ import annotations

import math
import re
from typing import Optional, Union

from .errors import InvalidArgumentError

Number = Union[int, float]

_MEM_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "m": 1000 ** 2, "g": 1000 ** 3, "t": 1000 ** 4,
    "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "tb": 1000 ** 4,
    "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40,
    "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}
_DUR_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def cpu_millis(value: Union[str, Number, None], what: str = "cpu") -> int:
    """1 -> 1000, "0.5" -> 500, "250m" -> 250; None -> 0 (hutchd's default)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise InvalidArgumentError("%s %r: give cores like 1, \"0.5\" or \"250m\"" % (what, value))
    if isinstance(value, (int, float)):
        cores = float(value)
    else:
        s = str(value).strip()
        m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*(m?)", s)
        if not m:
            raise InvalidArgumentError("%s %r: give cores like \"1\", \"0.5\" or \"250m\"" % (what, value))
        cores = float(m.group(1)) / (1000.0 if m.group(2) else 1.0)
    if not math.isfinite(cores) or cores <= 0:
        raise InvalidArgumentError("%s %r: must be more than zero" % (what, value))
    return max(1, int(round(cores * 1000)))


def memory_bytes(value: Union[str, Number, None], what: str = "memory") -> int:
    """"512Mi" -> 536870912, "2Gi", "1G", "100M"; a bare number means MiB
    (as in other sandbox SDKs: memory=1024 is 1 GiB); None -> 0 (default)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise InvalidArgumentError("%s %r: give a size like \"512Mi\" or \"2Gi\"" % (what, value))
    if isinstance(value, (int, float)):
        n = float(value) * (1 << 20)
    else:
        s = str(value).strip()
        m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)", s)
        if not m or m.group(2).lower() not in _MEM_UNITS:
            raise InvalidArgumentError("%s %r: give a size like \"512Mi\", \"2Gi\" or \"1G\"" % (what, value))
        unit = m.group(2).lower()
        n = float(m.group(1)) * (_MEM_UNITS[unit] if unit else 1 << 20)
    if not math.isfinite(n) or n <= 0:
        raise InvalidArgumentError("%s %r: must be more than zero" % (what, value))
    return int(n)


def seconds(value: Union[str, Number, None], what: str = "lifetime") -> float:
    """"1h" -> 3600, "30m", "1h30m", "45s", "500ms", 90 (seconds); None -> 0."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise InvalidArgumentError("%s %r: give a duration like \"1h\", \"30m\" or seconds" % (what, value))
    if isinstance(value, (int, float)):
        total = float(value)
    else:
        s = str(value).strip().lower()
        if re.fullmatch(r"\d+(?:\.\d*)?", s):
            total = float(s)
        else:
            parts = re.findall(r"(\d+(?:\.\d*)?)\s*(ms|s|m|h|d)", s)
            if not parts or re.sub(r"\s+", "", "".join(a + b for a, b in parts)) != re.sub(r"\s+", "", s):
                raise InvalidArgumentError(
                    "%s %r: give a duration like \"1h\", \"30m\", \"1h30m\" or seconds" % (what, value))
            total = sum(float(a) * _DUR_UNITS[b] for a, b in parts)
    if not math.isfinite(total) or total <= 0:
        raise InvalidArgumentError("%s %r: must be more than zero" % (what, value))
    return total


def whole_seconds(value: Union[str, Number, None], what: str = "lifetime") -> int:
    s = seconds(value, what)
    return int(math.ceil(s)) if s else 0


def millis(value: Union[str, Number, None], what: str = "timeout") -> int:
    s = seconds(value, what)
    return int(math.ceil(s * 1000)) if s else 0


def optional_seconds(value: Union[str, Number, None], what: str = "timeout") -> Optional[float]:
    return seconds(value, what) if value is not None else None
