"""The audit log: who did what, recorded by routes and services, searched by owners."""
