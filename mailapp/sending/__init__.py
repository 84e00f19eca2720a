"""The send engine: render, build MIME, SMTP batches, rate limit. No Flask routes."""
