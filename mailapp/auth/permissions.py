"""Who may open what: the one table of the role every endpoint needs, read by the web layer before
any view runs (pages: mailapp/web.py; API: mailapp/api/routes.py).

Deny by default. An endpoint's need is looked up first in ENDPOINT_NEEDS by its name, then in
AREA_NEEDS by its area: the blueprint's name, or "api.<module>" for the API, whose routes are spread
over one module per resource. An endpoint found in neither has no need declared, and is refused to
everyone, owners too (tests/test_roles.py names it). To declare a new blueprint's routes, add one line
to AREA_NEEDS (READ_VIEWER_WRITE_EDITOR, OWNER_ONLY, ...) and override single endpoints below it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailapp.models import Role

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Need:
    """What a request needs: nothing (public), or at least `role`; `export` lets a lower role in
    when the user has the can_export grant (downloads of personal data)."""

    role: Role | None
    export_grant_suffices: bool = False

    @property
    def is_public(self) -> bool:
        return self.role is None

    def allows(self, role: Role, *, can_export: bool = False) -> bool:
        if self.role is None or role.at_least(self.role):
            return True
        return self.export_grant_suffices and can_export

    def describe(self) -> str:
        if self.role is None:
            return "anyone"
        if self.export_grant_suffices:
            return f"the {self.role} role or the export grant"
        return f"the {self.role} role"


@dataclass(frozen=True)
class ByMethod:
    """Reads need one role, writes another."""

    read: Need
    write: Need

    def for_method(self, method: str) -> Need:
        return self.read if method.upper() in READ_METHODS else self.write


PUBLIC = Need(None)
SIGNED_IN = Need(Role.VIEWER)
EDITOR = Need(Role.EDITOR)
OWNER = Need(Role.OWNER)
# Personal data leaving the installation (subscriber lists, delivery logs as CSV).
EXPORT = Need(Role.EDITOR, export_grant_suffices=True)
READ_VIEWER_WRITE_EDITOR = ByMethod(read=SIGNED_IN, write=EDITOR)
OWNER_ONLY = ByMethod(read=OWNER, write=OWNER)
# Settings that hold keys or credentials, or make the server connect where they say (sending domains,
# relays): everyone may read them, only owners change them.
READ_VIEWER_WRITE_OWNER = ByMethod(read=SIGNED_IN, write=OWNER)

Declared = Need | ByMethod

# Per area: a blueprint's name, or "api.<module>" for the API's resource modules.
AREA_NEEDS: dict[str, Declared] = {
    "dashboard": READ_VIEWER_WRITE_EDITOR,
    "layouts": READ_VIEWER_WRITE_EDITOR,
    "subscribers": READ_VIEWER_WRITE_EDITOR,
    "campaigns": READ_VIEWER_WRITE_EDITOR,
    "segments": READ_VIEWER_WRITE_EDITOR,
    "reports": READ_VIEWER_WRITE_EDITOR,
    "deliverability": READ_VIEWER_WRITE_EDITOR,
    "domains": READ_VIEWER_WRITE_OWNER,
    "relays": READ_VIEWER_WRITE_OWNER,
    # Mail sent in development: invites and password resets of every user land there.
    "devinbox": OWNER_ONLY,
    "users": OWNER_ONLY,
    "audit": OWNER_ONLY,
    # Links in sent mail, opened by recipients without an account: the signed token is the check.
    "tracking": PUBLIC,
    # Called by the mail providers, who prove who they are by a signature or credentials (webhooks/).
    "webhooks": PUBLIC,
    "api.campaigns": READ_VIEWER_WRITE_EDITOR,
    "api.layouts": READ_VIEWER_WRITE_EDITOR,
    "api.lists": READ_VIEWER_WRITE_EDITOR,
    "api.subscribers": READ_VIEWER_WRITE_EDITOR,
    "api.segments": READ_VIEWER_WRITE_EDITOR,
    "api.reports": READ_VIEWER_WRITE_EDITOR,
    "api.audit": OWNER_ONLY,
    "api.suppressions": READ_VIEWER_WRITE_EDITOR,
    "api.sending_domains": READ_VIEWER_WRITE_OWNER,
    "api.relays": READ_VIEWER_WRITE_OWNER,
    # Signup forms and the lists' opt-in settings; resending a confirmation.
    "signup": READ_VIEWER_WRITE_EDITOR,
    "api.signup": READ_VIEWER_WRITE_EDITOR,
}

# Single endpoints that differ from their area (or have none: the auth pages, static files).
ENDPOINT_NEEDS: dict[str, Declared] = {
    "static": PUBLIC,
    "favicon": PUBLIC,
    "media.image": PUBLIC,  # layout images in sent messages; the URL holds the content's SHA-256
    "bootstrap.static": PUBLIC,
    "api.openapi_json": PUBLIC,
    "auth.login": PUBLIC,
    "auth.login_code": PUBLIC,  # the second step: the password already checked, no session yet
    "auth.forgot_password": PUBLIC,
    "auth.reset_password_page": PUBLIC,
    "users.accept_invite": PUBLIC,
    # Visitors and readers without an account: the hosted signup form (snippets on other sites post to
    # it), the public signup API and its CORS preflight, and the emailed confirmation and preference
    # links, whose signed token is the check.
    "signup.hosted_form": PUBLIC,
    "signup.hosted_submit": PUBLIC,
    "signup.thanks": PUBLIC,
    "signup.altcha_challenge": PUBLIC,
    "signup.confirm_page": PUBLIC,
    "signup.confirm": PUBLIC,
    "signup.preferences": PUBLIC,
    "signup.preferences_save": PUBLIC,
    "api.api_public_subscribe": PUBLIC,
    "api.api_public_subscribe_preflight": PUBLIC,
    "auth.logout": SIGNED_IN,
    "auth.change_password_page": SIGNED_IN,
    "auth.account": SIGNED_IN,  # the user's own settings (time zone)
    "auth.two_factor_page": SIGNED_IN,
    "auth.two_factor_enrol": SIGNED_IN,
    "auth.two_factor_disable": SIGNED_IN,
    "auth.tokens": SIGNED_IN,
    "auth.create_token": SIGNED_IN,
    "auth.revoke_token_page": SIGNED_IN,
    # Renders a layout without storing it: a viewer may look, not change.
    "layouts.preview_draft": SIGNED_IN,
    "subscribers.export_list": EXPORT,
    "reports.deliveries_csv": EXPORT,
    "api.api_export": EXPORT,
    "deliverability.export_csv": EXPORT,
    "api.api_export_suppressions": EXPORT,
    # Looking the records up again changes only the stored result of the last check.
    "domains.check": EDITOR,
    "api.check_sending_domain": EDITOR,
    # Counts a posted rule tree and stores nothing: a viewer may ask.
    "api.api_count_segment": SIGNED_IN,
    "segments.count": SIGNED_IN,
    # Sender identities are part of writing campaigns (the relays page holds them too).
    "relays.edit_identity": READ_VIEWER_WRITE_EDITOR,
    "relays.delete_identity": EDITOR,
    "api.api_create_identity": EDITOR,
    "api.api_update_identity": EDITOR,
    "api.api_delete_identity": EDITOR,
}


def area_of(endpoint: str, view: Callable[..., Any] | None) -> str:
    blueprint = endpoint.partition(".")[0] if "." in endpoint else ""
    if blueprint == "api" and view is not None:
        return f"api.{view.__module__.rsplit('.', 1)[-1]}"
    return blueprint


def need_for(endpoint: str, method: str, view: Callable[..., Any] | None) -> Need | None:
    """The need declared for this endpoint and method; None when nothing is declared."""
    declared = ENDPOINT_NEEDS.get(endpoint) or AREA_NEEDS.get(area_of(endpoint, view))
    if declared is None:
        return None
    if isinstance(declared, ByMethod):
        return declared.for_method(method)
    return declared
