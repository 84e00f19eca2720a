"""Migration 0010 on a database of its own that holds users and tokens from before it: admins become
owners, everyone else editors, each token keeps its user's role, and the downgrade takes it all back."""

from __future__ import annotations

from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from mailapp.extensions import db
from tests.test_tracking_migration import NOW, fresh_app, sql

__all__ = ["fresh_app"]


def test_admins_become_owners_and_tokens_keep_their_users_role(fresh_app):
    with fresh_app.app_context():
        upgrade(revision="0004")
        for user_id, email, is_admin in ((1, "admin@example.com", True), (2, "staff@example.com", False)):
            sql("INSERT INTO users (id, email, password_hash, is_admin, created_at) "
                "VALUES (:id, :email, 'x', :admin, :now)", id=user_id, email=email, admin=is_admin, now=NOW)
            sql("INSERT INTO api_tokens (user_id, name, token_hash, created_at) "
                "VALUES (:id, 't', :hash, :now)", id=user_id, hash=f"{user_id:064d}", now=NOW)
        db.session.commit()
        upgrade(revision="0010")
        assert sql("SELECT email, role, can_export, name FROM users ORDER BY id") == [
            ("admin@example.com", "owner", False, ""), ("staff@example.com", "editor", False, ""),
        ]
        assert sql("SELECT user_id, role FROM api_tokens ORDER BY user_id") == [(1, "owner"), (2, "editor")]
        db.session.commit()
        downgrade(revision="0004")
        columns = [row[1] for row in db.session.execute(text("PRAGMA table_info(users)"))]
        assert "role" not in columns
        assert sql("SELECT count(*) FROM users") == [(2,)]
