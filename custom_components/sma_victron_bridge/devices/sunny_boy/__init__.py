"""SMA Sunny Boy inverters over Speedwire or Bluetooth: runtime, entities, flow, plant."""
