"""Units as TrackMate (ImageJ) writes them, and their normalized names in trackstore."""

from __future__ import annotations

_SPACE = {
    "micrometre": ("micron", "microns", "µm", "μm", "um", "micrometer", "micrometers", "micrometre",
                   "micrometres"),
    "nanometre": ("nm", "nanometer", "nanometers", "nanometre", "nanometres"),
    "millimetre": ("mm", "millimeter", "millimeters", "millimetre", "millimetres"),
    "centimetre": ("cm", "centimeter", "centimeters", "centimetre", "centimetres"),
    "metre": ("m", "meter", "meters", "metre", "metres"),
    "pixel": ("pixel", "pixels", "px", "pix"),
}
_TIME = {
    "second": ("s", "sec", "secs", "second", "seconds"),
    "millisecond": ("ms", "msec", "millisecond", "milliseconds"),
    "microsecond": ("µs", "μs", "us", "microsecond", "microseconds"),
    "minute": ("min", "mins", "minute", "minutes"),
    "hour": ("h", "hr", "hrs", "hour", "hours"),
    "day": ("d", "day", "days"),
    "frame": ("frame", "frames", "timepoint", "timepoints"),
}
_SPACE_OF = {alias.lower(): name for name, aliases in _SPACE.items() for alias in aliases}
_TIME_OF = {alias.lower(): name for name, aliases in _TIME.items() for alias in aliases}

#: What the exporter writes for a normalized unit (ImageJ's usual spelling).
SPACE_TO_TRACKMATE = {"micrometre": "µm", "nanometre": "nm", "millimetre": "mm", "centimetre": "cm",
                      "metre": "m", "pixel": "pixel"}
TIME_TO_TRACKMATE = {"second": "sec", "millisecond": "ms", "microsecond": "µs", "minute": "min",
                     "hour": "h", "day": "day", "frame": "frame"}


def space_unit(raw: str | None) -> str | None:
    """Normalized spatial unit (``micron``, ``µm``, ``micrometer`` → ``micrometre``); unknown ones verbatim."""
    if raw is None:
        return None
    key = raw.strip()
    return _SPACE_OF.get(key.lower(), key or None)


def time_unit(raw: str | None) -> str | None:
    """Normalized time unit (``sec`` → ``second``, ``min`` → ``minute``); unknown ones verbatim."""
    if raw is None:
        return None
    key = raw.strip()
    return _TIME_OF.get(key.lower(), key or None)
