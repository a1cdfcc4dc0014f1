"""Living beside Home Assistant's own ``victron_ble`` integration (core since 2025.12).

Both integrations match the same advertisements (Victron's manufacturer id 737), so without care
a user is asked twice about one device. The rule, documented in the README:

* A device set up in this integration is ours: a discovery the core integration starts for its
  address is withdrawn at once, so the user never sees a second prompt for it.
* A device set up in the core integration is the core's: this integration does not offer it in
  discovery (the abort says how to move it here). Adding it here by hand stays possible, e.g. for
  the GATT link or as a Sunny Island battery source.
"""

from __future__ import annotations

from collections.abc import Callable

from homeassistant.config_entries import SOURCE_IGNORE, ConfigEntry
from homeassistant.core import HomeAssistant, callback

CORE_DOMAIN = "victron_ble"
CORE_KEY = "access_token"


def core_entry(hass: HomeAssistant, address: str) -> ConfigEntry | None:
    """The core integration's entry for ``address`` (not an ignored discovery), if any."""
    for entry in hass.config_entries.async_entries(CORE_DOMAIN, include_ignore=False):
        if entry.source != SOURCE_IGNORE and (entry.unique_id or "").upper() == address.upper():
            return entry
    return None


def core_key(hass: HomeAssistant, address: str) -> str | None:
    """The encryption key the core integration was given for ``address``."""
    entry = core_entry(hass, address)
    key = None if entry is None else entry.data.get(CORE_KEY)
    return key if isinstance(key, str) else None


@callback
def async_withdraw_core_discovery(hass: HomeAssistant, address: str) -> Callable[[], None]:
    """Withdraw the core integration's discovery of ``address`` now and whenever it starts one.

    Returns the callback that stops watching (call it when the entry unloads).
    """
    flows = hass.config_entries.flow

    @callback
    def _withdraw(flow_id: str) -> None:
        flow = flows.async_get(flow_id)
        if flow["handler"] != CORE_DOMAIN:
            return
        if str(flow["context"].get("unique_id") or "").upper() == address.upper():
            flows.async_abort(flow_id)

    for flow in flows.async_progress_by_handler(CORE_DOMAIN):
        _withdraw(flow["flow_id"])

    @callback
    def _on_flow(change: str, flow_id: str) -> None:
        if change == "added":
            _withdraw(flow_id)

    return flows.async_subscribe_flow(_on_flow)
