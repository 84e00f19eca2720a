"""Verifying DKIM signatures in tests with dkimpy (an independent implementation), against the TXT
records the app publishes: reusable by any test that receives mailapp's messages (the aiosmtpd test
server, Postfix).

    results = verify_dkim(raw_bytes, {record["name"]: record["value"] for record in records})
    assert [result.valid for result in results] == [True]"""

from __future__ import annotations

import re
from dataclasses import dataclass

import dkim


@dataclass(frozen=True)
class DkimResult:
    domain: str
    selector: str
    algorithm: str
    valid: bool
    reason: str  # why not, when not valid


def signature_tags(raw: bytes) -> list[dict[str, str]]:
    """The tags of each DKIM-Signature header, top first."""
    message = dkim.DKIM(raw)
    found = []
    for name, value in message.headers:
        if name.lower() == b"dkim-signature":
            unfolded = re.sub(rb"\s+", b"", value).decode("ascii")
            found.append(dict(part.split("=", 1) for part in unfolded.split(";") if "=" in part))
    return found


def verify_dkim(raw: bytes, published_records: dict[str, str]) -> list[DkimResult]:
    """One result per DKIM-Signature of the message, top first; DNS answered only from
    published_records ({owner name: TXT value}, as the domain page shows them)."""
    records = {name.lower().rstrip("."): value for name, value in published_records.items()}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        value = records.get(name.decode("ascii").lower().rstrip("."))
        return value.encode("ascii") if value is not None else None

    results = []
    for index, tags in enumerate(signature_tags(raw)):
        checker = dkim.DKIM(raw)
        try:
            valid, reason = bool(checker.verify(idx=index, dnsfunc=dnsfunc)), ""
        except dkim.DKIMException as error:
            valid, reason = False, str(error)
        if not valid and not reason:
            reason = "signature does not verify"
        results.append(DkimResult(tags.get("d", ""), tags.get("s", ""), tags.get("a", ""), valid, reason))
    return results
