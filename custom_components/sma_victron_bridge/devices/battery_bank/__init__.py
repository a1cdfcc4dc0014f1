"""Battery bank: several packs, each with its own BMS entry, as one battery."""
