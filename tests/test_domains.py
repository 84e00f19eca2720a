"""Sending domains: adding one (names checked, keys made and sealed), the DNS records it needs, and
the DNS check, asked of a real DNS server on loopback (tests/dns_server.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mailapp.domains import dns_check, services
from mailapp.domains.records import TXT_STRING_BYTES, spf_mechanisms, txt_strings
from mailapp.errors import ConflictError, ValidationError
from mailapp.models import SendingDomain
from mailapp.secret_box import SecretBox
from mailapp.sending.dkim import generate_rsa_key
from tests.dns_server import DnsTestServer, dns_server_for


@pytest.fixture
def dns_server(app) -> Iterator[DnsTestServer]:
    with dns_server_for(app) as server:
        yield server


@pytest.mark.parametrize(("given", "stored"), [
    ("Example.COM", "example.com"),
    ("  news.example.com. ", "news.example.com"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("marketing@Example.org", "example.org"),
])
def test_a_domain_is_stored_lower_case_in_idna_form(db, given: str, stored: str) -> None:
    assert services.create_domain(given).domain == stored


@pytest.mark.parametrize("given", [
    "", "   ", "localhost", "exa mple.com", "-bad.example.com", "bad-.example.com", "example..com",
    "a" * 64 + ".com", ".".join(["abcdefghij"] * 25) + ".com", "192.0.2.1", "exam_ple.com", "x" * 5000,
    "example.com\x00", None, 42, ".".join(["a" * 60] * 4),
])
def test_a_bad_domain_name_is_refused_naming_the_field(db, given: object) -> None:
    with pytest.raises(ValidationError) as refused:
        services.create_domain(given)
    assert refused.value.details[0]["field"] == "domain"
    assert db.session.query(SendingDomain).count() == 0


def test_the_same_domain_twice_is_a_conflict(db) -> None:
    services.create_domain("example.com")
    with pytest.raises(ConflictError):
        services.create_domain("EXAMPLE.com.")


def test_keys_are_sealed_and_the_selectors_generated_or_chosen(db, app) -> None:
    generated = services.create_domain("example.com", ed25519=True)
    assert generated.selector == f"mailapp{time.strftime('%Y%m', time.gmtime())}"
    assert generated.ed25519_selector == generated.selector + "e"
    assert "PRIVATE KEY" not in generated.rsa_private_key_sealed
    box = SecretBox.from_app(app)
    assert box.open(generated.rsa_private_key_sealed).startswith("-----BEGIN PRIVATE KEY-----")
    assert box.open(generated.ed25519_private_key_sealed).startswith("-----BEGIN PRIVATE KEY-----")
    chosen = services.create_domain("example.org", selector="Jan2027")
    assert (chosen.selector, chosen.ed25519_selector) == ("jan2027", None)
    with pytest.raises(ValidationError) as refused:
        services.create_domain("example.net", selector="two words")
    assert refused.value.details[0]["field"] == "selector"


def test_the_records_to_publish_are_split_into_255_byte_strings(db) -> None:
    sending_domain = services.create_domain("example.com", ed25519=True)
    records = {record.purpose: record for record in services.records_for(sending_domain)}
    dkim = records["dkim"]
    assert dkim.name == f"{sending_domain.selector}._domainkey.example.com"
    assert dkim.value == f"v=DKIM1; k=rsa; p={sending_domain.rsa_public_key}"
    assert len(dkim.value) > TXT_STRING_BYTES
    assert "".join(dkim.strings) == dkim.value
    assert all(len(part) <= TXT_STRING_BYTES for part in dkim.strings)
    assert dkim.zone_line.startswith(f"{dkim.name}. 3600 IN TXT ( \"v=DKIM1; k=rsa; p=")
    assert records["dkim-ed25519"].value == f"v=DKIM1; k=ed25519; p={sending_domain.ed25519_public_key}"
    assert records["dkim-ed25519"].strings == [records["dkim-ed25519"].value]
    assert records["spf"].name == "example.com"
    assert records["spf"].value.startswith("v=spf1 ")
    assert records["spf"].value.endswith(" ~all")
    assert records["dmarc"].name == "_dmarc.example.com"
    assert records["dmarc"].value == "v=DMARC1; p=none; rua=mailto:dmarc-reports@example.com"
    assert txt_strings("x" * 600) == ["x" * 255, "x" * 255, "x" * 90]


@pytest.mark.parametrize(("configured", "relay", "expected"), [
    ("include:_spf.relay.example   ip4:192.0.2.1", "smtp.relay.example",
     "include:_spf.relay.example ip4:192.0.2.1"),
    ("", "smtp.relay.example", "a:smtp.relay.example"),
    ("", "192.0.2.7", "ip4:192.0.2.7"),
    ("", "2001:db8::25", "ip6:2001:db8::25"),
    ("", "127.0.0.1", "mx"),
])
def test_the_spf_suggestion_uses_the_setting_or_the_relay_as_a_hint(configured, relay, expected) -> None:
    assert spf_mechanisms(configured, relay) == expected


def published(sending_domain: SendingDomain) -> dict[tuple[str, str], list[str]]:
    return {(record.name, "TXT"): [record.value] for record in services.records_for(sending_domain)}


def by_record(findings: list[dns_check.Finding]) -> dict[str, tuple[str, str]]:
    return {finding.record: (finding.status, finding.message) for finding in findings}


def test_a_domain_that_published_everything_passes_the_check(db, dns_server) -> None:
    sending_domain = services.create_domain("example.com", ed25519=True)
    dns_server.records.update(published(sending_domain))
    dns_server.records[("_dmarc.example.com", "TXT")] = ["v=DMARC1; p=quarantine; rua=mailto:d@example.com"]
    findings = by_record(services.check_domain(sending_domain))
    assert {record: status for record, (status, _) in findings.items()} == {
        "dkim": "ok", "dkim-ed25519": "ok", "spf": "ok", "dmarc": "ok"}, findings
    assert sending_domain.check_passed is True
    assert sending_domain.checked_at is not None
    assert ("_dmarc.example.com", "TXT") in dns_server.queries


def test_the_check_says_what_is_missing(db, dns_server) -> None:
    sending_domain = services.create_domain("example.com")
    dns_server.records[("example.com", "MX")] = ["10 mx.example.com."]
    findings = by_record(services.check_domain(sending_domain))
    assert findings["dkim"][0] == "error"
    assert f"No DKIM record at {sending_domain.selector}._domainkey.example.com" in findings["dkim"][1]
    assert findings["spf"][0] == "error"
    assert "No SPF record" in findings["spf"][1]
    assert findings["dmarc"][0] == "error"
    assert "No DMARC record" in findings["dmarc"][1]
    assert sending_domain.check_passed is False


def test_the_check_says_what_is_wrong(db, dns_server) -> None:
    sending_domain = services.create_domain("example.com")
    _, other_key = generate_rsa_key()
    dkim_name = f"{sending_domain.selector}._domainkey.example.com"
    dns_server.records[(dkim_name, "TXT")] = [f"v=DKIM1; k=rsa; p={other_key}"]
    dns_server.records[("example.com", "TXT")] = ["v=spf1 mx ~all", "v=spf1 a -all", "site-verification=x"]
    dns_server.records[("_dmarc.example.com", "TXT")] = ["v=DMARC1; p=none"]
    findings = by_record(services.check_domain(sending_domain))
    assert findings["dkim"] == ("error", f"The key (p=) at {dkim_name} is not this domain's key in mailapp "
                                         "(an old key, or a copy cut short?): replace the record with the "
                                         "one shown.")
    assert findings["spf"][0] == "error"
    assert "2 SPF records" in findings["spf"][1]
    assert findings["dmarc"][0] == "warning"
    assert "p=none" in findings["dmarc"][1]
    assert "no rua=" in findings["dmarc"][1]


@pytest.mark.parametrize(("spf", "status", "words"), [
    ("v=spf1 mx +all", "error", "+all"),
    ("v=spf1 mx -all", "warning", "-all"),
    ("v=spf1 mx ?all", "warning", "?all"),
    ("v=spf1 mx", "warning", "no all mechanism"),
    ("v=spf1 redirect=_spf.example.net", "ok", "SPF record"),
    ("V=SPF1 include:_spf.example.net ~ALL", "ok", "SPF record"),
])
def test_spf_all_mechanisms_are_judged(db, dns_server, spf: str, status: str, words: str) -> None:
    sending_domain = services.create_domain("example.com")
    dns_server.records[("example.com", "TXT")] = [spf]
    finding = by_record(services.check_domain(sending_domain))["spf"]
    assert finding[0] == status
    assert words in finding[1]


def test_a_subdomain_is_covered_by_its_parents_dmarc_record(db, dns_server) -> None:
    sending_domain = services.create_domain("news.example.com")
    dns_server.records[("_dmarc.example.com", "TXT")] = ["v=DMARC1; p=reject; rua=mailto:d@example.com"]
    assert by_record(services.check_domain(sending_domain))["dmarc"] == (
        "ok", "DMARC record at _dmarc.example.com: p=reject.")


def test_a_dkim_key_split_over_several_strings_and_served_over_tcp_matches(db, dns_server) -> None:
    sending_domain = services.create_domain("example.com")
    dns_server.records.update(published(sending_domain))
    # A 2048-bit key's record and the rest do not fit the 512-byte UDP answer: the resolver asks again
    # over TCP, as it must with real DNS.
    dns_server.records[("example.com", "TXT")] = ["v=spf1 mx ~all", "x" * 600]
    findings = by_record(services.check_domain(sending_domain))
    assert (findings["dkim"][0], findings["spf"][0]) == ("ok", "ok")
    assert dns_server.tcp_answers >= 1


def test_an_unreachable_resolver_costs_one_timeout_not_one_per_record(db, app) -> None:
    sending_domain = services.create_domain("example.com", ed25519=True)
    with DnsTestServer() as silent:
        silent.silent = True
        app.config["DNS_RESOLVER"], previous = silent.address, app.config["DNS_RESOLVER"]
        try:
            started = time.monotonic()
            findings = services.check_domain(sending_domain)
            elapsed = time.monotonic() - started
        finally:
            app.config["DNS_RESOLVER"] = previous
    assert elapsed < 3 * app.config["DNS_TIMEOUT_SECONDS"]
    assert [finding.status for finding in findings] == ["error"] * 4
    assert all("no answer in time" in finding.message for finding in findings)


@pytest.mark.parametrize(("setting", "parsed"), [
    ("127.0.0.1:5353", ("127.0.0.1", 5353)), ("[::1]:5353", ("::1", 5353)), ("::1", ("::1", 53)),
    ("192.0.2.1", ("192.0.2.1", 53)),
])
def test_the_resolver_setting_is_an_address_and_a_port(setting: str, parsed: tuple[str, int]) -> None:
    assert dns_check.parse_resolver(setting) == parsed


@pytest.mark.parametrize("setting", ["dns.example.com:53", "127.0.0.1:0", "127.0.0.1:99999"])
def test_a_resolver_setting_that_is_not_an_address_is_refused(setting: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - ip_address and int raise plain ValueErrors
        dns_check.parse_resolver(setting)
