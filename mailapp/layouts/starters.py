"""Starter layouts: six responsive MJML layouts a new layout can begin from, each with the unsubscribe
link in place. The MJML files sit beside this module, in starters/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_DIRECTORY = Path(__file__).resolve().parent / "starters"


@dataclass(frozen=True)
class Starter:
    key: str
    name: str
    description: str

    def source(self) -> str:
        return (_DIRECTORY / f"{self.key}.mjml").read_text(encoding="utf-8")


STARTERS: tuple[Starter, ...] = (
    Starter("newsletter", "Newsletter", "A banner, your message, and two stories side by side."),
    Starter("announcement", "Announcement", "One big headline, your message and a call to action."),
    Starter("product-update", "Product update", "What changed: your message and new, improved, fixed."),
    Starter("digest", "Digest", "A numbered list of stories under your message."),
    Starter("event-invitation", "Event invitation", "When and where, and an RSVP button."),
    Starter("letter", "Plain letter", "Text only, like a personal email."),
)
_BY_KEY = {starter.key: starter for starter in STARTERS}


def find_starter(key: str) -> Starter | None:
    return _BY_KEY.get(key)
