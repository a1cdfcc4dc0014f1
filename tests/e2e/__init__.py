"""Browser tests: a real Home Assistant with its frontend, driven as a user would in Chromium."""
