"""gtls in both roles against Node.js's built-in ``tls`` module (``node``, with its own bundled OpenSSL) over
127.0.0.1: TLS 1.2 and 1.3, ECDSA and RSA, simple and mutual TLS, data integrity both ways, the ways a node peer
ends a connection (``end()``, ``destroy()``, half close), renegotiation, session resumption, refused certificates,
the peer-name rule and ALPN. The node peer is a small script the module writes to a temporary folder (no npm
packages); it takes one JSON argument and prints one JSON event per line. Skipped when ``node`` is not installed.

What node does that shapes the assertions (node 20, OpenSSL 3.0): its ``rejectUnauthorized`` refuses a peer
certificate in JavaScript after OpenSSL finished the handshake and closes without an alert, so gtls reads an EOF:
``eof-in-handshake`` when node's last handshake message was still queued (it is dropped with the socket),
``truncated`` where gtls had finished its side first (a TLS 1.3 client, a TLS 1.2 server). A refusal inside node's
OpenSSL (no client certificate) sends its alert as usual.
Node reads an EOF without ``close_notify`` as a normal end, so a node peer cannot tell gtls's abort (``truncated``)
from a clean close."""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from gtls import (
    HandshakeError,
    TLSOptions,
    TLSStream,
    classify_ending,
    open_tls_over_tcp_stream,
)
from tests.interop_gtls import (
    PeerRun,
    Served,
    answer_after_end,
    client_outcome,
    exchange,
    gtls_client,
    gtls_server,
    json_peer,
    noting_alpn,
    read_all,
    reads_close_or_abort,
    send_eof_is_answered,
    send_eof_is_refused_on_tls12,
    sends_eof_first,
    server_options,
)
from tests.peers import INTEROP_MATRIX, LOCALHOST, PKI, write_pki

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="the node command (Node.js) is not installed: "
                                "apt-get install nodejs to run the Node.js interop tests")

BOTH = pytest.mark.parametrize("version", ["1.3", "1.2"])
BULK = 2 << 20  # bytes each way in the integrity tests
STEP = 15.0  # bound on any node run

PEER_JS = r"""'use strict';
// gtls's Node.js test peer: one JSON argument (cfg), one JSON event per line on stdout.
const tls = require('tls');
const fs = require('fs');
const crypto = require('crypto');

const cfg = JSON.parse(process.argv[2]);
const say = (event, extra) => process.stdout.write(JSON.stringify(Object.assign({ event: event }, extra)) + '\n');
setTimeout(() => { say('watchdog', {}); process.exit(3); }, 10000).unref();

function options() {
  const o = { allowHalfOpen: !!cfg.halfOpen };
  for (const name of ['ca', 'cert', 'key']) if (cfg[name]) o[name] = fs.readFileSync(cfg[name]);
  if (cfg.version) o.minVersion = o.maxVersion = 'TLSv' + cfg.version;
  if (cfg.alpn) o.ALPNProtocols = cfg.alpn;
  return o;
}

function watch(s) {
  s.on('error', (e) => say('error', { code: e.code || null, message: String(e.message).trim() }));
  s.on('end', () => say('end', {}));
}

function secure(s, extra) {
  const peer = s.getPeerCertificate();
  say('secure', Object.assign({ protocol: s.getProtocol(), authorized: s.authorized, alpn: s.alpnProtocol || null,
    reused: s.isSessionReused(), peer: (peer && peer.subject && peer.subject.CN) || null }, extra));
}

// Sends cfg.size random bytes in random chunks while reading as many, reports both digests, then ends.
function bulk(s) {
  const sent = crypto.createHash('sha256'), got = crypto.createHash('sha256');
  let left = cfg.size, received = 0, wrote = false, read = false;
  const done = () => { if (wrote && read) s.end(); };
  s.on('data', (d) => {
    got.update(d); received += d.length;
    if (received < cfg.size || read) return;
    read = true; say('received', { bytes: received, sha256: got.digest('hex') }); done();
  });
  const pump = () => {
    while (left > 0) {
      const chunk = crypto.randomBytes(Math.min(left, 1 + Math.floor(Math.random() * 65536)));
      sent.update(chunk); left -= chunk.length;
      if (!s.write(chunk)) { s.once('drain', pump); return; }
    }
    wrote = true; say('sent', { bytes: cfg.size, sha256: sent.digest('hex') }); done();
  };
  pump();
}

function collect(s, then) {  // all data until the peer's end, reported as one event
  let text = '';
  s.on('data', (d) => { text += d; });
  s.on('end', () => { say('data', { text: text }); if (then) then(); });
}

const actions = {
  echo(s) {  // a server echoes everything; a client sends one line and ends once it is back
    if (cfg.role === 'server') { s.on('data', (d) => s.write(d)); return; }
    let text = '';
    s.on('data', (d) => { text += d; if (text.endsWith('\n')) { say('data', { text: text }); s.end(); } });
    s.write('hello\n');
  },
  bulk: bulk,
  end(s) { s.on('data', () => {}); s.write('hello\n', () => setTimeout(() => s.end(), 100)); },
  destroy(s) { s.on('data', () => {}); s.write('hello\n', () => setTimeout(() => s.destroy(), 100)); },
  half(s) { collect(s); s.end('request\n'); },  // our close_notify first, then the peer's answer
  answer(s) { collect(s, () => s.end('answer\n')); },  // the peer ends first; answer after its close_notify
  renegotiate(s) {
    s.on('data', (d) => say('data', { text: String(d) }));
    s.write('first\n', () => s.renegotiate({}, (e) => say('renegotiated', { code: e ? e.code || null : null })));
  },
};

function connect(n, session) {
  const o = Object.assign(options(), { host: '127.0.0.1', port: cfg.port, servername: cfg.servername || undefined,
                                       session: session });
  let latest = session;
  const s = tls.connect(o, () => { secure(s, { n: n }); actions[cfg.action](s); });
  s.on('session', (got) => { latest = got; });
  watch(s);
  s.on('close', () => { if (n + 1 < (cfg.connections || 1)) connect(n + 1, latest); });
}

function serve() {
  const o = options();
  if (cfg.mutual) { o.requestCert = true; o.rejectUnauthorized = true; }
  const server = tls.createServer(o, (s) => {
    watch(s); secure(s, { servername: s.servername || null }); actions[cfg.action](s);
  });
  server.on('tlsClientError', (e) => say('tlsClientError', { code: e.code || null, message: String(e.message) }));
  server.on('connection', () => server.close());  // one connection; the process ends with it
  server.listen(0, '127.0.0.1', () => say('listening', { port: server.address().port }));
}

if (cfg.role === 'server') serve(); else connect(0, undefined);
"""


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("node-peer") / "peer.js"
    path.write_text(PEER_JS)
    return path


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PKI]:
    made = {key: write_pki(tmp_path_factory.mktemp(f"node-{key}"), key_type=key) for key in ("ec", "rsa")}  # type: ignore[arg-type]
    made["other"] = write_pki(tmp_path_factory.mktemp("node-other"))  # another root: refused by both
    return made


# --- the node peer -------------------------------------------------------------------------------------------------


@dataclass
class NodeRun(PeerRun):
    @property
    def errors(self) -> list[str | None]:
        """Error codes node reported (``ERR_SSL_…``), from sockets and from a server's failed handshakes."""
        return [event["code"] for event in self.events if event["event"] in ("error", "tlsClientError")]


@asynccontextmanager
async def node(script: Path, **cfg: Any) -> AsyncIterator[NodeRun]:
    """Run the node peer with ``cfg``. Inside the block a server's ``port`` is known; leaving it waits (bounded) for
    node to finish, so every event is in. Node's own watchdog ends it after 10 s."""
    assert NODE is not None
    async with json_peer([NODE, str(script)], cfg, NodeRun(), STEP) as run:
        yield run


async def node_client(script: Path, port: int, pki: PKI, version: str | None, action: str = "echo", *,
                      mutual: bool = False, **cfg: Any) -> NodeRun:
    settings: dict[str, Any] = {"role": "client", "port": port, "ca": str(pki.ca_file), "servername": "localhost",
                                "version": version, "action": action}
    if mutual:
        settings.update(cert=str(pki.client_cert), key=str(pki.client_key))
    settings.update(cfg)
    async with node(script, **settings) as run:
        pass
    return run


def node_server(script: Path, pki: PKI, version: str | None, action: str = "echo", *, mutual: bool = False,
                **cfg: Any) -> AbstractAsyncContextManager[NodeRun]:
    settings: dict[str, Any] = {"role": "server", "ca": str(pki.ca_file), "cert": str(pki.server_cert),
                                "key": str(pki.server_key), "version": version, "action": action, "mutual": mutual}
    settings.update(cfg)
    return node(script, **settings)


# --- gtls server, node client --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "key", "mutual"), INTEROP_MATRIX)
async def test_node_client_with_gtls_server(script: Path, pkis: dict[str, PKI], version: str, key: str,
                                            mutual: bool) -> None:
    pki = pkis[key]
    async with gtls_server(server_options(pki, version, mutual)) as served:
        run = await node_client(script, served.port, pki, version, mutual=mutual)
    [secure] = run.of("secure")
    assert (secure["protocol"], secure["authorized"], secure["peer"]) == (f"TLSv{version}", True, "localhost")
    assert run.texts == ["hello\n"] and run.errors == []
    [event] = served.events
    assert event.ok and event.tls_version == f"TLSv{version}" and event.server_name == "localhost"
    assert event.subject == ("CN=client.test" if mutual else None)


@BOTH
async def test_data_integrity_node_client(script: Path, pkis: dict[str, PKI], version: str) -> None:
    """Random chunks both ways at once, checksummed on each side; node's end() then closes cleanly."""
    async def duplex(stream: TLSStream, served: Served) -> None:
        served.digests.append(await exchange(stream, BULK))
        assert await stream.receive_some() == b""  # node's close_notify

    pki = pkis["ec"]
    async with gtls_server(server_options(pki, version), duplex) as served:
        run = await node_client(script, served.port, pki, version, "bulk", size=BULK)
    [(sent, got)] = served.digests
    assert run.of("sent")[0]["sha256"] == got and run.of("received")[0]["sha256"] == sent
    assert run.errors == [] and served.ends == []


@BOTH
@pytest.mark.parametrize(("action", "word"), [("end", None), ("destroy", "truncated")])
async def test_node_client_end_and_destroy(script: Path, pkis: dict[str, PKI], version: str, action: str,
                                           word: str | None) -> None:
    """end() sends close_notify and FIN: gtls reads a clean EOF; destroy() only closes the socket: ``truncated``."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, version), read_all) as served:
        run = await node_client(script, served.port, pki, version, action)
    assert run.errors == []
    if word is None:
        assert served.received == [b"hello\n"] and served.ends == []
    else:
        assert served.received == [] and served.ends == [word]


async def test_half_close_node_client_ends_first(script: Path, pkis: dict[str, PKI]) -> None:
    """TLS 1.3: node's end() (allowHalfOpen) closes its direction only; gtls reads the EOF and still answers."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, "1.3"), answer_after_end) as served:
        run = await node_client(script, served.port, pki, "1.3", "half", halfOpen=True)
    assert served.received == [b"request\n"] and run.texts == ["reply:request\n"] and run.errors == []


async def test_half_close_gtls_server_sends_eof(script: Path, pkis: dict[str, PKI]) -> None:
    """TLS 1.3: gtls's send_eof() reaches node as 'end'; node answers after it and gtls reads the answer."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, "1.3"), sends_eof_first) as served:
        run = await node_client(script, served.port, pki, "1.3", "answer", halfOpen=True)
    assert run.texts == ["bye\n"] and served.received == [b"answer\n"] and run.errors == []


async def test_node_client_renegotiation_is_refused(script: Path, pkis: dict[str, PKI]) -> None:
    """TLS 1.2 renegotiate(): gtls refuses (no_renegotiation); node gives up with ERR_SSL_NO_RENEGOTIATION and its
    handshake_failure alert makes gtls's word ``renegotiation-refused``."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, "1.2"), read_all) as served:
        run = await node_client(script, served.port, pki, "1.2", "renegotiate")
    assert served.ends == ["renegotiation-refused"]
    assert "ERR_SSL_NO_RENEGOTIATION" in run.errors


@BOTH
@pytest.mark.parametrize("mutual", [False, True], ids=["simple", "mutual"])
async def test_node_client_resumes_sessions(script: Path, pkis: dict[str, PKI], version: str, mutual: bool) -> None:
    """Node keeps the session of its 'session' event (a TLS 1.2 ticket, a TLS 1.3 ticket) and offers it again."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, version, mutual)) as served:
        run = await node_client(script, served.port, pki, version, mutual=mutual, connections=2)
    assert [secure["reused"] for secure in run.of("secure")] == [False, True]
    assert [event.session_reused for event in served.events] == [False, True]
    assert [event.subject for event in served.events] == (["CN=client.test"] * 2 if mutual else [None, None])
    assert run.texts == ["hello\n"] * 2 and run.errors == []


@BOTH
@pytest.mark.parametrize(("certificate", "reason", "alert"), [
    ("other", "untrusted", "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA"),
    ("none", "no-peer-certificate", {"1.3": "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED",
                                     "1.2": "ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE"}),
])
async def test_gtls_server_refuses_node_client_certificate(script: Path, pkis: dict[str, PKI], version: str,
                                                           certificate: str, reason: str,
                                                           alert: str | dict[str, str]) -> None:
    """The event has the reason word (and the refused client's subject); node gets the alert as its error, also
    in TLS 1.3, where node had already called its side of the handshake done."""
    pki, other = pkis["ec"], pkis["other"]
    cert = {"cert": str(other.client_cert), "key": str(other.client_key)} if certificate == "other" else {}
    async with gtls_server(server_options(pki, version, mutual=True)) as served:
        run = await node_client(script, served.port, pki, version, **cert)
    [event] = served.events
    assert not event.ok and event.reason == reason, event.describe()
    assert event.subject == ("CN=client.test" if certificate == "other" else None)
    assert run.errors[:1] == [alert if isinstance(alert, str) else alert[version]], run.events
    assert run.texts == []


@BOTH
async def test_node_client_refuses_gtls_server_name(script: Path, pkis: dict[str, PKI], version: str) -> None:
    """Node's checkServerIdentity refuses after the handshake, without an alert: no data reaches gtls's handler."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, version), read_all) as served:
        run = await node_client(script, served.port, pki, version, servername="other.example")
    assert run.errors == ["ERR_TLS_CERT_ALTNAME_INVALID"] and not run.of("secure")
    assert served.received == []
    # TLS 1.3: node's Finished never left (eof-in-handshake); TLS 1.2: gtls finished first and reads the EOF.
    words = [event.reason for event in served.events if not event.ok] + served.ends
    assert words == (["eof-in-handshake"] if version == "1.3" else ["truncated"])


async def test_alpn_gtls_server_node_client(script: Path, pkis: dict[str, PKI]) -> None:
    seen: list[str | None] = []
    pki = pkis["ec"]
    async with gtls_server(pki.server_options(), noting_alpn(seen), alpn=["h2", "http/1.1"]) as served:
        runs = [await node_client(script, served.port, pki, None, alpn=offer) for offer in (["http/1.1", "h2"], ["x"])]
    assert [run.of("secure")[0]["alpn"] for run in runs] == ["h2", None]  # the server's preference; none shared
    assert seen == ["h2", None]


# --- gtls client, node server --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "key", "mutual"), INTEROP_MATRIX)
async def test_gtls_client_with_node_server(script: Path, pkis: dict[str, PKI], version: str, key: str,
                                            mutual: bool) -> None:
    pki = pkis[key]
    async with (
        node_server(script, pki, version, mutual=mutual) as run,
        await gtls_client(pki, version, run.port, mutual=mutual) as stream,
    ):
        await stream.send_all(b"hello\n")
        assert await stream.receive_some() == b"hello\n"
        assert stream.tls_version == f"TLSv{version}" and stream.server_name == "localhost"
        assert stream.peer_chain == [pki.server.cert, pki.intermediate.cert]
    [secure] = run.of("secure")
    assert (secure["protocol"], secure["servername"]) == (f"TLSv{version}", "localhost")
    assert (secure["authorized"], secure["peer"]) == ((True, "client.test") if mutual else (False, None))
    assert run.errors == []


@BOTH
async def test_data_integrity_gtls_client(script: Path, pkis: dict[str, PKI], version: str) -> None:
    pki = pkis["ec"]
    async with (
        node_server(script, pki, version, "bulk", size=BULK) as run,
        await gtls_client(pki, version, run.port) as stream,
    ):
        sent, got = await exchange(stream, BULK)
        assert await stream.receive_some() == b""  # node's close_notify
    assert run.of("sent")[0]["sha256"] == got and run.of("received")[0]["sha256"] == sent
    assert run.errors == []


@BOTH
@pytest.mark.parametrize(("action", "word"), [("end", None), ("destroy", "truncated")])
async def test_node_server_end_and_destroy(script: Path, pkis: dict[str, PKI], version: str, action: str,
                                           word: str | None) -> None:
    pki = pkis["ec"]
    await reads_close_or_abort(node_server(script, pki, version, action), pki, version, word)


async def test_gtls_client_send_eof_to_node(script: Path, pkis: dict[str, PKI]) -> None:
    """TLS 1.3: node (allowHalfOpen) reads gtls's send_eof() as 'end' and answers; gtls reads it, then EOF."""
    pki = pkis["ec"]
    await send_eof_is_answered(node_server(script, pki, "1.3", "answer", halfOpen=True), pki)


async def test_gtls_client_send_eof_is_refused_on_tls12(script: Path, pkis: dict[str, PKI]) -> None:
    pki = pkis["ec"]
    await send_eof_is_refused_on_tls12(node_server(script, pki, "1.2"), pki)


async def test_node_server_renegotiation_is_refused(script: Path, pkis: dict[str, PKI]) -> None:
    pki = pkis["ec"]
    async with (
        node_server(script, pki, "1.2", "renegotiate") as run,
        await gtls_client(pki, "1.2", run.port) as stream,
    ):
        assert await stream.receive_some() == b"first\n"
        with pytest.raises(trio.BrokenResourceError) as caught:
            await stream.receive_some()
    assert classify_ending(caught.value).word == "renegotiation-refused"
    assert "ERR_SSL_NO_RENEGOTIATION" in run.errors


@BOTH
@pytest.mark.parametrize(("case", "reason", "alert"), [
    ("other-ca", "untrusted", "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA"),
    ("other-name", "name-mismatch", "ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE"),
])
async def test_gtls_client_refuses_node_server(script: Path, pkis: dict[str, PKI], version: str, case: str,
                                               reason: str, alert: str) -> None:
    pki = pkis["ec"]
    extra = {"trusted_ca": str(pkis["other"].ca_file)} if case == "other-ca" else {"tls_target_name": "other.example"}
    async with node_server(script, pki, version) as run:
        with pytest.raises(HandshakeError) as caught:
            await gtls_client(pki, version, run.port, **extra)
    assert caught.value.reason == reason
    if case == "other-name":
        assert (caught.value.depth, caught.value.subject) == (0, "CN=localhost")
    assert run.errors == [alert] and not run.of("secure")


@BOTH
@pytest.mark.parametrize("certificate", ["none", "other"])
async def test_node_server_refuses_gtls_client(script: Path, pkis: dict[str, PKI], version: str,
                                               certificate: str) -> None:
    """Without a certificate node's OpenSSL refuses with an alert (``peer-alert``); an untrusted one node refuses in
    JavaScript after the handshake, without an alert: gtls reads the EOF (``truncated`` once its TLS 1.3 handshake
    was done, ``eof-in-handshake`` in TLS 1.2, where node's Finished is dropped with the socket)."""
    pki, other = pkis["ec"], pkis["other"]
    mutual = certificate == "other"
    ca = {"ca": str(other.ca_file)} if mutual else {}
    async with node_server(script, pki, version, mutual=True, **ca) as run:
        word = await client_outcome(lambda: gtls_client(pki, version, run.port, mutual=mutual), send=False)
    expected = {("none", "1.3"): "peer-alert", ("none", "1.2"): "peer-alert",
                ("other", "1.3"): "truncated", ("other", "1.2"): "eof-in-handshake"}
    assert word == expected[certificate, version]
    assert not run.of("secure")
    if certificate == "none":
        assert run.errors == ["ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE"]


async def test_alpn_gtls_client_node_server(script: Path, pkis: dict[str, PKI]) -> None:
    pki = pkis["ec"]
    async with node_server(script, pki, None, alpn=["h2", "http/1.1"]) as run:
        stream = await open_tls_over_tcp_stream(LOCALHOST, run.port, pki.client_options(), server_hostname="localhost",
                                                alpn_protocols=["http/1.1", "h2"])
        async with stream:
            assert stream.alpn_protocol == "h2"
    assert run.of("secure")[0]["alpn"] == "h2"
    async with node_server(script, pki, None, alpn=["x"]) as run:
        with pytest.raises(HandshakeError) as caught:
            await open_tls_over_tcp_stream(LOCALHOST, run.port, pki.client_options(), server_hostname="localhost",
                                           alpn_protocols=["http/1.1", "h2"])
    assert (caught.value.reason, caught.value.alert) == ("peer-alert", "no_application_protocol")
    assert run.errors == ["ERR_SSL_NO_APPLICATION_PROTOCOL"]


# --- the peer-name rule: gtls's (SAN DNS names, else CN; no wildcards) beside node's checkServerIdentity -----------


NAME_CASES = [  # (certificate, reference name, gtls client, node client)
    pytest.param({"common_name": "localhost"}, "localhost", "ok", "ok", id="cn-only"),
    pytest.param({"common_name": "localhost", "dns": ["other.test"]}, "localhost", "name-mismatch",
                 "ERR_TLS_CERT_ALTNAME_INVALID", id="san-hides-cn"),
    pytest.param({"common_name": "w", "dns": ["*.example.test"]}, "a.example.test", "name-mismatch", "ok",
                 id="wildcard"),
    pytest.param({"common_name": "s", "ips": [ipaddress.ip_address("127.0.0.1")]}, "127.0.0.1", "name-mismatch", "ok",
                 id="ip-san"),
    pytest.param({"common_name": "127.0.0.1"}, "127.0.0.1", "ok", "ERR_TLS_CERT_ALTNAME_INVALID", id="ip-in-cn"),
]


@pytest.mark.parametrize(("names", "reference", "gtls_says", "node_says"), NAME_CASES)
async def test_peer_name_rule_beside_node(script: Path, pkis: dict[str, PKI], tmp_path: Path,
                                          names: dict[str, Any], reference: str, gtls_says: str,
                                          node_says: str) -> None:
    """Where the two rules differ, each side keeps its own: node accepts wildcards and IP subjectAltNames (and never
    an IP in the CN); gtls compares DNS subjectAltNames, else the CN, as strings, without wildcards."""
    pki = pkis["ec"]
    leaf = pki.intermediate.leaf(**names)
    cert, key = leaf.write_chain(tmp_path / "leaf.pem"), leaf.write_key(tmp_path / "leaf.key")
    ip = reference[0].isdigit()
    async with node(script, role="server", cert=str(cert), key=str(key), action="echo") as run:
        options = pki.client_options(tls_target_name_check="host")
        gtls_word = await client_outcome(lambda: open_tls_over_tcp_stream(
            LOCALHOST, run.port, options, server_hostname=None if ip else reference))
    assert gtls_word == gtls_says
    served_options = TLSOptions.from_mapping({"certificate": str(cert), "certificate-key": str(key),
                                              "trusted-ca": str(pki.ca_file)})
    async with gtls_server(served_options) as served:
        node_run = await node_client(script, served.port, pki, None, servername=None if ip else reference)
    assert (node_run.errors[0] if node_run.errors else "ok") == node_says
