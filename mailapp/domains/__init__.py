"""Sending domains: the domains mailapp DKIM-signs for, the DNS records to publish, and their check."""
