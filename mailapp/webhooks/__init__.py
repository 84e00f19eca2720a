"""Bounce and complaint webhooks of the email providers: Amazon SES (through SNS), SendGrid, Postmark
and Mailgun. Public (the provider's signature or credentials are the authentication), CSRF-exempt."""
