"""Bounces, complaints and mailto unsubscribes that arrive after the send: parsing (parsing.py), mapping
to deliveries and recording (services.py), the inbound SMTP receiver (receiver.py, `flask inbound
serve`) and the IMAP poller (mailbox.py, tasks.py)."""
