"""The team: users and their roles, invites, deactivation, and the team-wide settings."""
