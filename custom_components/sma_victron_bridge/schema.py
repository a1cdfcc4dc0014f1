"""The form-schema library Home Assistant validates flows with.

Home Assistant 2026.9 moved from voluptuous to probatio, an API-compatible successor, and types
flow forms with it; releases before (down to the supported 2026.6) only have voluptuous.
Importing ``vol`` from here gives the flows the library of the running release.
"""

from __future__ import annotations

try:
    import probatio as vol
except ImportError:  # pragma: no cover - Home Assistant before 2026.9
    import voluptuous as vol  # type: ignore[no-redef]

__all__ = ["vol"]
