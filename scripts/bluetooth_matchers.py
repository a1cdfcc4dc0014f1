"""Write the Bluetooth BMS matchers of ``manifest.json`` from the installed ``aiobmsble``.

Home Assistant starts a discovery flow for every advertisement a ``bluetooth`` matcher of the
manifest accepts. The BMS matchers are the library's own, translated by
``devices/ble_bms/matchers.py``: its docstring says what is widened or dropped and why (no
``oui`` key in Home Assistant; no "absent service data"; name patterns need three leading literal
characters). The Victron matcher (company id 737) stays as it is.

    .venv/bin/python scripts/bluetooth_matchers.py            # rewrite the manifest's list
    .venv/bin/python scripts/bluetooth_matchers.py --check    # exit 1 when it is out of date
    .venv/bin/python scripts/bluetooth_matchers.py --explain  # each matcher and its changes

Only the ``"bluetooth": [...]`` value is replaced, one matcher per line; the rest of the file is
left byte for byte. Run it after raising the pinned ``aiobmsble``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from custom_components.sma_victron_bridge.devices.ble_bms.matchers import (  # noqa: E402
    manifest_matchers,
    translations,
)

MANIFEST = ROOT / "custom_components" / "sma_victron_bridge" / "manifest.json"
VICTRON_COMPANY_ID = 737
KEY = '"bluetooth":'


def kept_matchers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's matchers that are not the library's: the Victron one."""
    return [
        matcher
        for matcher in manifest.get("bluetooth", [])
        if matcher.get("manufacturer_id") == VICTRON_COMPANY_ID
    ]


def render(text: str, matchers: list[dict[str, Any]]) -> str:
    """``text`` with its ``bluetooth`` array replaced by ``matchers``, one per line."""
    start = text.index(KEY) + len(KEY)
    value_start = start + len(text[start:]) - len(text[start:].lstrip())
    _, length = json.JSONDecoder().raw_decode(text[value_start:])
    lines = ",\n".join(f"    {json.dumps(matcher)}" for matcher in matchers)
    return f"{text[:value_start]}[\n{lines}\n  ]{text[value_start + length :]}"


def wanted(text: str) -> str:
    """The manifest as it should be for the installed library."""
    manifest = json.loads(text)
    return render(text, [*kept_matchers(manifest), *manifest_matchers()])


def explain() -> None:
    """Print every library matcher and what the manifest makes of it."""
    for item in translations():
        outcome = "dropped" if item.matcher is None else json.dumps(item.matcher)
        print(f"{item.family}: {json.dumps(dict(item.source))}\n    -> {outcome}")
        for note in item.notes:
            print(f"       {note}")


def main(argv: list[str] | None = None) -> int:
    """Rewrite, check or explain; 1 when ``--check`` finds the manifest out of date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report a difference")
    parser.add_argument("--explain", action="store_true", help="show each translation")
    args = parser.parse_args(argv)
    if args.explain:
        explain()
        return 0
    text = MANIFEST.read_text()
    new = wanted(text)
    if args.check:
        if new != text:
            print("manifest.json: Bluetooth matchers differ from the installed aiobmsble")
            return 1
        return 0
    if new != text:
        MANIFEST.write_text(new)
        print(f"manifest.json: {len(json.loads(new)['bluetooth'])} Bluetooth matchers written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
