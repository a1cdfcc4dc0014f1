"""Bluetooth BMS device kind: every BMS family ``aiobmsble`` reads, via HA's Bluetooth."""
