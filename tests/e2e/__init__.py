"""Real-browser tests of a marketer's day (Playwright driving Debian's Chromium against the running app)."""
