"""A small authoritative DNS server for tests, on loopback: answers TXT (and any other type given)
from a dict, over UDP and TCP, written with dnspython. Point DNS_RESOLVER at `server.address`.

    with DnsTestServer({("example.com", "TXT"): ["v=spf1 mx ~all"]}) as server:
        app.config["DNS_RESOLVER"] = server.address

Records can be changed while it runs (`server.records[...] = [...]`). A name with no record of any type
answers NXDOMAIN; a name with records of other types, an empty NOERROR. TXT values longer than 255
bytes are split into strings the way DNS needs; an answer over 512 bytes is truncated over UDP, so
the client asks again over TCP. `server.queries` lists (name, type) asked."""

from __future__ import annotations

import contextlib
import errno
import socket
import socketserver
import struct
import threading
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Records = dict[tuple[str, str], list[str]]


def _txt_rdata_text(value: str) -> str:
    raw = value.encode("utf-8")
    parts = [raw[start:start + 255] for start in range(0, len(raw), 255)] or [b""]
    escaped = [part.decode("utf-8").replace("\\", "\\\\").replace('"', '\\"') for part in parts]
    return " ".join(f'"{part}"' for part in escaped)


def _udp_and_tcp_on_one_port(
    handler: type[socketserver.BaseRequestHandler],
) -> tuple[socket.socket, socketserver.ThreadingTCPServer]:
    """A free UDP port and a TCP server on the same number, as a resolver address names one port for
    both. The UDP port is free when chosen, but its TCP twin may be any other socket's (another
    test's server, an outgoing connection's local port): then try another."""
    for _ in range(100):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        try:
            tcp = socketserver.ThreadingTCPServer(("127.0.0.1", udp.getsockname()[1]), handler)
        except OSError as error:
            udp.close()
            if error.errno != errno.EADDRINUSE:
                raise
            continue
        return udp, tcp
    raise OSError(errno.EADDRINUSE, "no port free for both UDP and TCP after 100 tries")


class DnsTestServer:
    def __init__(self, records: Records | None = None) -> None:
        self.records: Records = {(name.lower().rstrip("."), kind.upper()): values
                                 for (name, kind), values in (records or {}).items()}
        self.queries: list[tuple[str, str]] = []
        self.tcp_answers = 0  # answers sent over TCP (after a truncated UDP one)
        self.silent = False  # True: read queries and never answer, like a resolver that is down
        server = self

        class TcpHandler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                header = self.request.recv(2)
                if len(header) < 2:
                    return
                (length,) = struct.unpack("!H", header)
                wire = b""
                while len(wire) < length:
                    chunk = self.request.recv(length - len(wire))
                    if not chunk:
                        return
                    wire += chunk
                answer = server.answer(wire)
                server.tcp_answers += 1
                self.request.sendall(struct.pack("!H", len(answer)) + answer)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._udp, self._tcp = _udp_and_tcp_on_one_port(TcpHandler)
        self.port = self._udp.getsockname()[1]
        self._tcp.daemon_threads = True
        self._threads = [threading.Thread(target=self._serve_udp, daemon=True),
                         threading.Thread(target=self._tcp.serve_forever, daemon=True)]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, kind))
        values = self.records.get((name, kind))
        if values:
            texts = [_txt_rdata_text(value) if kind == "TXT" else value for value in values]
            response.answer.append(dns.rrset.from_text_list(question.name, 300, "IN", kind, texts))
        elif not any(known == name for known, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    def _serve_udp(self) -> None:
        while True:
            try:
                wire, client = self._udp.recvfrom(4096)
            except OSError:
                return  # closed
            if self.silent:
                continue
            try:
                answer = self.answer(wire)
            except Exception:  # a malformed query gets no answer, as from a real server  # noqa: S112
                continue
            if len(answer) > 512:  # the classic UDP limit: the client asks again over TCP
                reply = dns.message.from_wire(answer)
                reply.answer.clear()
                reply.flags |= dns.flags.TC
                answer = reply.to_wire()
            try:
                self._udp.sendto(answer, client)
            except OSError:
                return  # closed meanwhile

    def __enter__(self) -> DnsTestServer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._udp.close()
        self._tcp.shutdown()
        self._tcp.server_close()


@contextlib.contextmanager
def dns_server_for(app) -> Iterator[DnsTestServer]:
    """A DNS server with no records yet, which the app's DNS check asks while the block runs. A test
    module makes it a fixture: `dns_server = pytest.fixture(...)` over this, see tests/test_domains.py."""
    with DnsTestServer() as server:
        previous = app.config["DNS_RESOLVER"]
        app.config["DNS_RESOLVER"] = server.address
        try:
            yield server
        finally:
            app.config["DNS_RESOLVER"] = previous
