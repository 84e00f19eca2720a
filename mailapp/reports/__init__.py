"""Campaign reports: numbers, charts and CSV exports."""
