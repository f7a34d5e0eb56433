"""gtls in both roles against Go's ``crypto/tls`` (the TLS stack of most Go services; Debian's ``golang-go``, Go 1.19)
over 127.0.0.1: TLS 1.2 and 1.3, ECDSA and RSA (RSA signs with RSA-PSS in TLS 1.3 both ways), simple and mutual TLS
(Go's ``RequireAndVerifyClientCert``), intermediates sent and verified both ways (two of them too), checksummed data
both ways, how a Go peer ends a connection (``Close()``, ``CloseWrite()``, its socket closed under it), session
resumption, refused, untrusted and revoked certificates, versions and suites that do not overlap, Go's
``CurvePreferences`` (a HelloRetryRequest), ALPN and the two peer-name rules side by side. The Go peer is one source
file (standard library only) that the module writes to a temporary folder and builds once per session with ``go build``
(offline, its cache in that folder; half a second where gcc is installed, see ``peer``); it takes one JSON argument
and prints one JSON event per line. Skipped when ``go`` is not installed.

What Go does that shapes the assertions:

* ``Close()`` sends ``close_notify`` and FIN; ``CloseWrite()`` only ``close_notify`` (TLS 1.2 too) and keeps reading;
  Go answers after gtls's TLS 1.3 ``send_eof()``. Go reads a TCP EOF at a record boundary as ``io.EOF``, as it reads
  ``close_notify``: a Go peer cannot tell gtls's abort from its clean close (node cannot either).
* A Go client that closes with a TLS 1.3 server's session tickets unread resets the connection (gtls reads ``reset``),
  so the client's close and abort read the echo, and the tickets with it, first.
* Go verifies inside the handshake and refuses any certificate with ``bad_certificate`` (unknown CA, wrong name and a
  missing client certificate alike): ``peer-alert`` on gtls. Its client ignores the CN (Go 1.15 on) and takes
  wildcards and IP subjectAltNames; it sends the SNI in the case it was given (gtls's client sends lower case).
* gtls's refusals reach Go as ``remote error: tls: <alert>``: from ``Handshake()``, or in TLS 1.3, when gtls's server
  refuses the client's certificate, on Go's first read. When gtls's TLS 1.3 client refuses a Go server, OpenSSL
  sends the alert in plaintext before its encrypted flight and Go reports ``local error: tls: bad record MAC`` (as
  from ``s_client``; Java and GnuTLS likewise fail to decrypt it).
* Go's TLS 1.3 suites are fixed (no CCM); a Go server names the client's versions as it read them: a TLS 1.2-only
  ClientHello has no supported_versions extension, so ``[303 302 301]``.
* Neither Go role starts a renegotiation; a Go client's ``Renegotiation`` setting only answers a HelloRequest, which
  gtls never sends. Go sends no KeyUpdate either.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
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
from gtls.testing import KeyType
from tests.interop_gtls import (
    PeerRun,
    Served,
    answer_after_end,
    client_outcome,
    crl_options,
    exchange,
    gtls_client,
    gtls_server,
    json_peer,
    noting_alpn,
    open_client,
    read_all,
    reads_close_or_abort,
    send_eof_is_answered,
    send_eof_is_refused_on_tls12,
    sends_eof_first,
    server_options,
)
from tests.peers import INTEROP_MATRIX, LOCALHOST, PKI, write_pki

GO = shutil.which("go")
pytestmark = pytest.mark.skipif(GO is None, reason="the go command (Go) is not installed: apt-get install golang-go "
                                "to run the Go interop tests")

BOTH = pytest.mark.parametrize("version", ["1.3", "1.2"])
BULK = 2 << 20  # bytes each way in the integrity tests
STEP = 15.0  # bound on any Go run (the peer's own watchdog ends it after 10 s)
INTERMEDIATE = "gtls transport test intermediate"  # its CN (tests.peers.write_pki)

PEER_GO = r"""// gtls's Go (crypto/tls) test peer: one JSON argument (cfg), one JSON event per line on stdout.
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

type config struct {
	Role          string   `json:"role"`
	Port          int      `json:"port"`
	ServerName    string   `json:"servername"`
	CA            string   `json:"ca"`
	Cert          string   `json:"cert"`
	Key           string   `json:"key"`
	Version       string   `json:"version"`
	MinVersion    string   `json:"minVersion"`
	MaxVersion    string   `json:"maxVersion"`
	Ciphers       []string `json:"ciphers"`
	Curves        []string `json:"curves"`
	ALPN          []string `json:"alpn"`
	Mutual        bool     `json:"mutual"`
	Action        string   `json:"action"`
	Size          int      `json:"size"`
	Connections   int      `json:"connections"`
	Renegotiation string   `json:"renegotiation"`
}

var (
	cfg    config
	output sync.Mutex
)

func say(event string, fields map[string]any) {
	line := map[string]any{"event": event}
	for k, v := range fields {
		line[k] = v
	}
	data, _ := json.Marshal(line)
	output.Lock()
	defer output.Unlock()
	os.Stdout.Write(append(data, '\n'))
}

func fail(stage string, err error) {
	say("error", map[string]any{"stage": stage, "message": err.Error()})
}

var versions = map[string]uint16{"1.0": tls.VersionTLS10, "1.1": tls.VersionTLS11, "1.2": tls.VersionTLS12,
	"1.3": tls.VersionTLS13}
var versionNames = map[uint16]string{tls.VersionTLS10: "TLSv1", tls.VersionTLS11: "TLSv1.1",
	tls.VersionTLS12: "TLSv1.2", tls.VersionTLS13: "TLSv1.3"}
var curves = map[string]tls.CurveID{"X25519": tls.X25519, "P256": tls.CurveP256, "P384": tls.CurveP384,
	"P521": tls.CurveP521}
var renegotiation = map[string]tls.RenegotiationSupport{"": tls.RenegotiateNever, "never": tls.RenegotiateNever,
	"once": tls.RenegotiateOnceAsClient, "freely": tls.RenegotiateFreelyAsClient}

func suite(name string) uint16 {
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if s.Name == name {
			return s.ID
		}
	}
	panic("unknown cipher suite " + name)
}

func tlsConfig() *tls.Config {
	c := &tls.Config{ServerName: cfg.ServerName, NextProtos: cfg.ALPN, Renegotiation: renegotiation[cfg.Renegotiation]}
	if cfg.CA != "" {
		pem, err := os.ReadFile(cfg.CA)
		if err != nil {
			panic(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		c.RootCAs, c.ClientCAs = pool, pool
	}
	if cfg.Cert != "" {
		pair, err := tls.LoadX509KeyPair(cfg.Cert, cfg.Key)
		if err != nil {
			panic(err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	if cfg.Version != "" {
		c.MinVersion, c.MaxVersion = versions[cfg.Version], versions[cfg.Version]
	}
	if cfg.MinVersion != "" {
		c.MinVersion = versions[cfg.MinVersion]
	}
	if cfg.MaxVersion != "" {
		c.MaxVersion = versions[cfg.MaxVersion]
	}
	for _, name := range cfg.Ciphers {
		c.CipherSuites = append(c.CipherSuites, suite(name))
	}
	for _, name := range cfg.Curves {
		c.CurvePreferences = append(c.CurvePreferences, curves[name])
	}
	if cfg.Mutual {
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c
}

func secure(c *tls.Conn, n int) {
	s := c.ConnectionState()
	var chain []string
	for _, cert := range s.PeerCertificates {
		chain = append(chain, cert.Subject.CommonName)
	}
	verified := 0
	if len(s.VerifiedChains) > 0 {
		verified = len(s.VerifiedChains[0])
	}
	say("secure", map[string]any{"n": n, "protocol": versionNames[s.Version],
		"cipher": tls.CipherSuiteName(s.CipherSuite), "alpn": s.NegotiatedProtocol, "reused": s.DidResume,
		"servername": s.ServerName, "chain": chain, "verified": verified})
}

// readAll reads until the peer's end: "end" for io.EOF (close_notify, or a TCP EOF between records), else an error.
func readAll(c *tls.Conn) string {
	var text strings.Builder
	buf := make([]byte, 65536)
	for {
		n, err := c.Read(buf)
		text.Write(buf[:n])
		if errors.Is(err, io.EOF) {
			say("end", nil)
			return text.String()
		}
		if err != nil {
			fail("read", err)
			return text.String()
		}
	}
}

// readLine reads up to a newline; false (the error reported) if the connection ended first.
func readLine(c *tls.Conn) (string, bool) {
	var text []byte
	buf := make([]byte, 64)
	for !strings.HasSuffix(string(text), "\n") {
		n, err := c.Read(buf)
		text = append(text, buf[:n]...)
		if err != nil {
			fail("read", err)
			return string(text), false
		}
	}
	return string(text), true
}

func randomChunk(max int) []byte {
	n, _ := rand.Int(rand.Reader, big.NewInt(65536))
	size := int(n.Int64()) + 1
	if size > max {
		size = max
	}
	chunk := make([]byte, size)
	rand.Read(chunk)
	return chunk
}

// bulk sends cfg.Size random bytes in random chunks while reading as many, reports both digests, then closes.
func bulk(c *tls.Conn) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sum := sha256.New()
		for left := cfg.Size; left > 0; {
			chunk := randomChunk(left)
			sum.Write(chunk)
			left -= len(chunk)
			if _, err := c.Write(chunk); err != nil {
				fail("write", err)
				return
			}
		}
		say("sent", map[string]any{"bytes": cfg.Size, "sha256": hex.EncodeToString(sum.Sum(nil))})
	}()
	sum, buf, got := sha256.New(), make([]byte, 65536), 0
	for got < cfg.Size {
		n, err := c.Read(buf)
		sum.Write(buf[:n])
		got += n
		if err != nil {
			fail("read", err)
			break
		}
	}
	say("received", map[string]any{"bytes": got, "sha256": hex.EncodeToString(sum.Sum(nil))})
	wg.Wait()
	c.Close()
}

func act(c *tls.Conn) {
	switch cfg.Action {
	case "echo": // a server echoes until the end; a client sends a line and closes once it is back
		if cfg.Role == "server" {
			buf := make([]byte, 65536)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					c.Write(buf[:n])
				}
				if errors.Is(err, io.EOF) {
					say("end", nil)
					break
				}
				if err != nil {
					fail("read", err)
					break
				}
			}
			c.Close()
			return
		}
		if _, err := c.Write([]byte("hello\n")); err != nil {
			fail("write", err)
		}
		if text, ok := readLine(c); ok {
			say("data", map[string]any{"text": text})
		}
		c.Close()
	case "bulk":
		bulk(c)
	case "read": // only read, until the peer's end
		readAll(c)
		c.Close()
	case "close", "abort": // a line (a client reads its echo), then close_notify and FIN, or the socket's close
		c.Write([]byte("hello\n"))
		if cfg.Role == "client" {
			readLine(c) // also takes in a TLS 1.3 server's tickets: unread, they would turn the close into a reset
		} else {
			time.Sleep(100 * time.Millisecond)
		}
		if cfg.Action == "abort" {
			c.NetConn().Close()
		} else {
			c.Close()
		}
	case "half": // a request, close_notify (CloseWrite), then the peer's answer until its end
		c.Write([]byte("request\n"))
		if err := c.CloseWrite(); err != nil {
			fail("closewrite", err)
		}
		say("data", map[string]any{"text": readAll(c)})
		c.Close()
	case "answer": // all the peer sends until its end, then an answer and close
		say("data", map[string]any{"text": readAll(c)})
		if _, err := c.Write([]byte("answer\n")); err != nil {
			fail("write", err)
		}
		c.Close()
	}
}

func handshake(c *tls.Conn, n int) bool {
	c.SetDeadline(time.Now().Add(8 * time.Second))
	if err := c.Handshake(); err != nil {
		say("error", map[string]any{"stage": "handshake", "message": err.Error(), "n": n})
		c.Close()
		return false
	}
	secure(c, n)
	return true
}

func main() {
	if err := json.Unmarshal([]byte(os.Args[1]), &cfg); err != nil {
		panic(err)
	}
	go func() {
		time.Sleep(10 * time.Second)
		say("watchdog", nil)
		os.Exit(3)
	}()
	conf, count := tlsConfig(), cfg.Connections
	if count == 0 {
		count = 1
	}
	if cfg.Role == "server" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		say("listening", map[string]any{"port": ln.Addr().(*net.TCPAddr).Port})
		for n := 0; n < count; n++ {
			raw, err := ln.Accept()
			if err != nil {
				panic(err)
			}
			if c := tls.Server(raw, conf); handshake(c, n) {
				act(c)
			}
		}
		return
	}
	conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for n := 0; n < count; n++ {
		raw, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", cfg.Port), 5*time.Second)
		if err != nil {
			panic(err)
		}
		if c := tls.Client(raw, conf); handshake(c, n) {
			act(c)
		}
	}
}
"""


@pytest.fixture(scope="session")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built peer: ``go build`` runs once per session, offline, with its cache in the temporary folder. With
    gcc (Go's default C compiler, which Debian's golang-go recommends) it links Debian's precompiled standard library
    (0.5 s); without, cgo is off and the standard library is compiled first (4 s)."""
    assert GO is not None
    folder = tmp_path_factory.mktemp("go-peer")
    (folder / "peer.go").write_text(PEER_GO)
    env = {**os.environ, "GOCACHE": str(folder / "cache"), "GOPATH": str(folder / "gopath"), "GO111MODULE": "off",
           "GOFLAGS": "", "GOPROXY": "off", "GOTOOLCHAIN": "local",
           "CGO_ENABLED": "1" if shutil.which(os.environ.get("CC", "gcc")) else "0"}
    subprocess.run([GO, "build", "-o", str(folder / "peer"), str(folder / "peer.go")], cwd=folder, env=env,
                   check=True, capture_output=True, timeout=300)
    return folder / "peer"


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PKI]:
    keys: tuple[KeyType, ...] = ("ec", "rsa")
    made: dict[str, PKI] = {key: write_pki(tmp_path_factory.mktemp(f"go-{key}"), key_type=key) for key in keys}
    made["other"] = write_pki(tmp_path_factory.mktemp("go-other"))  # another root: refused by both
    return made


# --- the Go peer ---------------------------------------------------------------------------------------------------


@dataclass
class GoRun(PeerRun):
    @property
    def errors(self) -> list[str]:
        """Go's error texts, in order (``stage`` says where: handshake, read, write)."""
        return [event["message"] for event in self.of("error")]


@asynccontextmanager
async def go(peer: Path, **cfg: Any) -> AsyncIterator[GoRun]:
    """Run the Go peer with ``cfg``. Inside the block a server's ``port`` is known; leaving it waits (bounded) for
    the peer to finish, so every event is in."""
    async with json_peer([str(peer)], cfg, GoRun(), STEP) as run:
        yield run


async def go_client(peer: Path, port: int, pki: PKI, version: str | None, action: str = "echo", *,
                    mutual: bool = False, **cfg: Any) -> GoRun:
    settings: dict[str, Any] = {"role": "client", "port": port, "ca": str(pki.ca_file), "servername": "localhost",
                                "version": version or "", "action": action}
    if mutual:
        settings.update(cert=str(pki.client_cert), key=str(pki.client_key))
    settings.update(cfg)
    async with go(peer, **settings) as run:
        pass
    return run


def go_server(peer: Path, pki: PKI, version: str | None, action: str = "echo", *, mutual: bool = False,
              **cfg: Any) -> AbstractAsyncContextManager[GoRun]:
    settings: dict[str, Any] = {"role": "server", "ca": str(pki.ca_file), "cert": str(pki.server_cert),
                                "key": str(pki.server_key), "version": version or "", "action": action,
                                "mutual": mutual}
    settings.update(cfg)
    return go(peer, **settings)


# --- gtls server, Go client ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "key", "mutual"), INTEROP_MATRIX)
async def test_go_client_with_gtls_server(peer: Path, pkis: dict[str, PKI], version: str, key: str,
                                          mutual: bool) -> None:
    """A line there and back, then Go's Close() (close_notify): a clean end. Go verified the chain through the
    intermediate gtls sent (a path of 3) and gtls the client's, which Go sent with its intermediate."""
    pki = pkis[key]
    async with gtls_server(server_options(pki, version, mutual)) as served:
        run = await go_client(peer, served.port, pki, version, mutual=mutual)
    [secure] = run.of("secure")
    assert (secure["protocol"], secure["servername"]) == (f"TLSv{version}", "localhost")
    assert (secure["chain"], secure["verified"]) == (["localhost", INTERMEDIATE], 3)
    assert run.texts == ["hello\n"] and run.errors == []
    [event] = served.events
    assert event.ok and event.tls_version == f"TLSv{version}" and event.server_name == "localhost"
    assert event.subject == ("CN=client.test" if mutual else None)
    assert served.ends == []


@BOTH
async def test_data_integrity_go_client(peer: Path, pkis: dict[str, PKI], version: str) -> None:
    """Random chunks both ways at once, checksummed on each side; Go's Close() then ends cleanly."""
    async def duplex(stream: TLSStream, served: Served) -> None:
        served.digests.append(await exchange(stream, BULK))
        assert await stream.receive_some() == b""  # Go's close_notify

    pki = pkis["ec"]
    async with gtls_server(server_options(pki, version), duplex) as served:
        run = await go_client(peer, served.port, pki, version, "bulk", size=BULK)
    [(sent, got)] = served.digests
    assert run.of("sent")[0]["sha256"] == got and run.of("received")[0]["sha256"] == sent
    assert run.errors == [] and served.ends == []


@BOTH
@pytest.mark.parametrize(("action", "word"), [("close", None), ("abort", "truncated")])
async def test_go_client_close_and_abort(peer: Path, pkis: dict[str, PKI], version: str, action: str,
                                         word: str | None) -> None:
    """Close() sends close_notify, then FIN: a clean end; the socket closed under the tls.Conn: ``truncated``."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, version)) as served:
        run = await go_client(peer, served.port, pki, version, action)
    assert run.errors == []
    assert served.ends == ([] if word is None else [word])


@BOTH
async def test_half_close_go_client_ends_first(peer: Path, pkis: dict[str, PKI], version: str) -> None:
    """CloseWrite() sends close_notify (TLS 1.2 too) and keeps reading: gtls reads the end and still answers."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, version), answer_after_end) as served:
        run = await go_client(peer, served.port, pki, version, "half")
    assert served.received == [b"request\n"] and run.texts == ["reply:request\n"] and run.errors == []
    assert served.ends == []


async def test_half_close_gtls_server_sends_eof(peer: Path, pkis: dict[str, PKI]) -> None:
    """TLS 1.3: gtls's send_eof() reaches Go as io.EOF; Go answers after it and gtls reads the answer."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, "1.3"), sends_eof_first) as served:
        run = await go_client(peer, served.port, pki, "1.3", "answer")
    assert run.texts == ["bye\n"] and served.received == [b"answer\n"] and run.errors == []


@BOTH
@pytest.mark.parametrize("abort", [False, True], ids=["close", "abort"])
async def test_go_reads_gtls_abort_as_an_end(peer: Path, pkis: dict[str, PKI], version: str, abort: bool) -> None:
    """Go takes a TCP EOF at a record boundary as io.EOF, as it takes close_notify: a Go peer cannot tell gtls's
    abort (``aclose_forcefully``, no close_notify) from its clean close."""
    async def line_then_end(stream: TLSStream, served: Served) -> None:
        await stream.send_all(b"bye\n")
        if abort:
            await trio.aclose_forcefully(stream)

    pki = pkis["ec"]
    async with gtls_server(server_options(pki, version), line_then_end) as served:
        run = await go_client(peer, served.port, pki, version, "read")
    assert [event["event"] for event in run.events] == ["secure", "end"]


@BOTH
@pytest.mark.parametrize("mutual", [False, True], ids=["simple", "mutual"])
async def test_go_client_resumes_sessions(peer: Path, pkis: dict[str, PKI], version: str, mutual: bool) -> None:
    """Three connections sharing a ClientSessionCache: the second and third resume (TLS 1.2 and 1.3 tickets)."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, version, mutual)) as served:
        run = await go_client(peer, served.port, pki, version, mutual=mutual, connections=3)
    assert [event.session_reused for event in served.events] == [False, True, True]
    assert [secure["reused"] for secure in run.of("secure")] == [False, True, True]
    assert [event.subject for event in served.events] == (["CN=client.test"] * 3 if mutual else [None] * 3)
    assert run.texts == ["hello\n"] * 3 and run.errors == [] and served.ends == []


async def test_go_client_renegotiation_setting(peer: Path, pkis: dict[str, PKI]) -> None:
    """Go's Renegotiation setting only lets a client answer a server's HelloRequest, which gtls never sends; Go
    starts none itself (nor does a Go server): with RenegotiateFreelyAsClient the connection is an ordinary one."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, "1.2")) as served:
        run = await go_client(peer, served.port, pki, "1.2", renegotiation="freely")
    assert run.texts == ["hello\n"] and run.errors == [] and served.ends == []


@BOTH
@pytest.mark.parametrize(("certificate", "reason", "alert"), [
    pytest.param("other", "untrusted", "unknown certificate authority", id="other"),
    pytest.param("none", "no-peer-certificate", {"1.3": "certificate required", "1.2": "handshake failure"},
                 id="none"),
    pytest.param("revoked", "revoked", "revoked certificate", id="revoked"),
    pytest.param("expired", "expired", "expired certificate", id="expired"),
    pytest.param("server-only", "bad-purpose", "unsupported certificate", id="bad-purpose"),
])
async def test_gtls_server_refuses_go_client_certificate(peer: Path, pkis: dict[str, PKI], tmp_path: Path,
                                                         version: str, certificate: str, reason: str,
                                                         alert: str | dict[str, str]) -> None:
    """The event has the reason word and the client's subject; Go reports gtls's alert (OpenSSL's choice) as
    ``remote error``: from Handshake() in TLS 1.2, on its first read in TLS 1.3, where Go's handshake was done before
    gtls judged it. A leaf only for servers (extendedKeyUsage serverAuth) is ``bad-purpose``."""
    pki, other = pkis["ec"], pkis["other"]
    options = server_options(pki, version, mutual=True)
    cert: dict[str, Any] = {}
    if certificate == "other":
        cert = {"cert": str(other.client_cert), "key": str(other.client_key)}
    elif certificate == "revoked":
        cert = {"cert": str(pki.client_cert), "key": str(pki.client_key)}
        options = crl_options(pki, version, "client-revoked", server=True)
    elif certificate in ("expired", "server-only"):
        day = dt.timedelta(days=1)
        leaf = pki.intermediate.leaf("client.test", dns=["client.test"], **(
            {"not_before": -10 * day, "not_after": -day} if certificate == "expired" else {"eku": ["server"]}))
        cert = {"cert": str(leaf.write_chain(tmp_path / "c.pem")), "key": str(leaf.write_key(tmp_path / "c.key"))}
    async with gtls_server(options) as served:
        run = await go_client(peer, served.port, pki, version, "read", **cert)
    [event] = served.events
    assert not event.ok and event.reason == reason, event.describe()
    assert event.subject == (None if certificate == "none" else "CN=client.test")
    expected = alert if isinstance(alert, str) else alert[version]
    [error] = run.of("error")
    assert (error["stage"], error["message"]) == ("read" if version == "1.3" else "handshake",
                                                  f"remote error: tls: {expected}"), run.events
    assert len(run.of("secure")) == (1 if version == "1.3" else 0)


@BOTH
@pytest.mark.parametrize(("case", "message"), [
    pytest.param("other-ca", "x509: certificate signed by unknown authority", id="other-ca"),
    pytest.param("other-name", "x509: certificate is valid for localhost, not other.example", id="other-name"),
])
async def test_go_client_refuses_gtls_server(peer: Path, pkis: dict[str, PKI], version: str, case: str,
                                             message: str) -> None:
    """Go verifies inside the handshake and sends bad_certificate for any verification failure (unknown CA and
    name mismatch alike): gtls's event is ``peer-alert`` naming it."""
    pki = pkis["ec"]
    extra: dict[str, Any] = {"ca": str(pkis["other"].ca_file)} if case == "other-ca" else {
        "servername": "other.example"}
    async with gtls_server(server_options(pki, version), read_all) as served:
        run = await go_client(peer, served.port, pki, version, **extra)
    [error] = run.errors
    assert error.startswith(message) and not run.of("secure")
    [event] = served.events
    assert (event.reason, event.error and event.error.alert) == ("peer-alert", "bad_certificate")
    assert served.received == []


@pytest.mark.parametrize(("options", "cfg", "reason", "message"), [
    pytest.param({"sec_protocol": "TLSv13"}, {"version": "1.2"}, "protocol-version", "protocol version not supported",
                 id="tls13-server-tls12-client"),
    pytest.param({"sec_protocol": "TLSv12"}, {"version": "1.3"}, "protocol-version", "protocol version not supported",
                 id="tls12-server-tls13-client"),
    pytest.param({}, {"version": "1.1"}, "protocol-version", "protocol version not supported", id="tls11-client"),
    pytest.param({"sec_protocol": "TLSv12", "cipher_list": "ECDHE-ECDSA-AES128-GCM-SHA256"},
                 {"version": "1.2", "ciphers": ["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"]},
                 "no-shared-cipher", "handshake failure", id="tls12-suites"),
    pytest.param({}, {"version": "1.2", "ciphers": ["TLS_RSA_WITH_AES_128_GCM_SHA256"]}, "no-shared-cipher",
                 "handshake failure", id="static-rsa-to-ecdsa"),
    pytest.param({"sec_protocol": "TLSv13", "cipher_list": "TLS_AES_128_CCM_SHA256"}, {"version": "1.3"},
                 "no-shared-cipher", "handshake failure", id="tls13-ccm-only"),
    pytest.param({}, {"version": "1.2", "curves": ["P384"]}, "no-shared-cipher", "handshake failure",
                 id="tls12-p384-client"),
])
async def test_gtls_server_refuses_go_client_offer(peer: Path, pkis: dict[str, PKI], options: dict[str, str],
                                                   cfg: dict[str, Any], reason: str, message: str) -> None:
    """Versions or suites that do not overlap (Go's MinVersion/MaxVersion, CipherSuites; Go's TLS 1.3 suites are
    fixed, without CCM): gtls's reason word, OpenSSL's alert as Go reports it. A TLS 1.2 client whose supported
    groups (Go's CurvePreferences) leave out the curve of gtls's ECDSA certificate gets no ECDSA suite (RFC 8422
    §5.1; ``s_server`` does the same): ``no-shared-cipher``, and the message says so."""
    pki = pkis["ec"]
    cfg = {"version": "", **cfg}
    version = cfg.pop("version")
    async with gtls_server(pki.server_options(**options)) as served:
        run = await go_client(peer, served.port, pki, version or None, **cfg)
    [event] = served.events
    assert not event.ok and event.reason == reason, event.describe()
    assert run.errors == [f"remote error: tls: {message}"] and not run.of("secure")
    if "curves" in cfg:
        assert event.error is not None and "supported groups leave out P-256" in event.error.message, event.describe()


async def test_alpn_gtls_server_go_client(peer: Path, pkis: dict[str, PKI]) -> None:
    """gtls's server picks its own first choice; none shared: no protocol, no failure (Go's client does not insist)."""
    seen: list[str | None] = []
    pki = pkis["ec"]
    async with gtls_server(pki.server_options(), noting_alpn(seen), alpn=["h2", "http/1.1"]) as served:
        runs = [await go_client(peer, served.port, pki, None, alpn=offer) for offer in (["http/1.1", "h2"], ["x"])]
    assert [run.of("secure")[0]["alpn"] for run in runs] == ["h2", ""]
    assert seen == ["h2", None] and all(run.errors == [] for run in runs)


# --- gtls client, Go server ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "key", "mutual"), INTEROP_MATRIX)
async def test_gtls_client_with_go_server(peer: Path, pkis: dict[str, PKI], version: str, key: str,
                                          mutual: bool) -> None:
    """A line there and back; Go reads gtls's close_notify as io.EOF. Go's RequireAndVerifyClientCert verified the
    client's chain through the intermediate gtls sent."""
    pki = pkis[key]
    async with (
        go_server(peer, pki, version, mutual=mutual) as run,
        await gtls_client(pki, version, run.port, mutual=mutual) as stream,
    ):
        await stream.send_all(b"hello\n")
        assert await stream.receive_some() == b"hello\n"
        assert stream.tls_version == f"TLSv{version}" and stream.server_name == "localhost"
        assert stream.peer_chain == [pki.server.cert, pki.intermediate.cert]
    [secure] = run.of("secure")
    assert (secure["protocol"], secure["servername"]) == (f"TLSv{version}", "localhost")
    assert (secure["chain"], secure["verified"]) == ((["client.test", INTERMEDIATE], 3) if mutual else (None, 0))
    assert run.of("end") and run.errors == []


@BOTH
async def test_data_integrity_gtls_client(peer: Path, pkis: dict[str, PKI], version: str) -> None:
    pki = pkis["ec"]
    async with (
        go_server(peer, pki, version, "bulk", size=BULK) as run,
        await gtls_client(pki, version, run.port) as stream,
    ):
        sent, got = await exchange(stream, BULK)
        assert await stream.receive_some() == b""  # Go's close_notify
    assert run.of("sent")[0]["sha256"] == got and run.of("received")[0]["sha256"] == sent
    assert run.errors == []


@BOTH
@pytest.mark.parametrize(("action", "word"), [("close", None), ("abort", "truncated")])
async def test_go_server_close_and_abort(peer: Path, pkis: dict[str, PKI], version: str, action: str,
                                         word: str | None) -> None:
    pki = pkis["ec"]
    await reads_close_or_abort(go_server(peer, pki, version, action), pki, version, word)


@BOTH
async def test_half_close_go_server_ends_first(peer: Path, pkis: dict[str, PKI], version: str) -> None:
    """Go's CloseWrite(): gtls reads the end (TLS 1.2 too) and still sends; Go reads it, then gtls's close_notify."""
    pki = pkis["ec"]
    async with (
        go_server(peer, pki, version, "half") as run,
        await gtls_client(pki, version, run.port) as stream,
    ):
        assert await stream.receive_some() == b"request\n"
        assert await stream.receive_some() == b""
        await stream.send_all(b"answer\n")
    assert run.texts == ["answer\n"] and run.errors == []


async def test_gtls_client_send_eof_to_go(peer: Path, pkis: dict[str, PKI]) -> None:
    """TLS 1.3: Go reads gtls's send_eof() as io.EOF and answers; gtls reads it, then Go's close_notify."""
    pki = pkis["ec"]
    await send_eof_is_answered(go_server(peer, pki, "1.3", "answer"), pki)


async def test_gtls_client_send_eof_is_refused_on_tls12(peer: Path, pkis: dict[str, PKI]) -> None:
    pki = pkis["ec"]
    await send_eof_is_refused_on_tls12(go_server(peer, pki, "1.2"), pki)


@BOTH
async def test_gtls_client_does_not_resume_with_go_server(peer: Path, pkis: dict[str, PKI], version: str) -> None:
    """gtls's connector keeps no sessions (README, Resumption (client)): a full handshake each time, though Go's
    server issues TLS 1.3 tickets."""
    pki = pkis["ec"]
    async with go_server(peer, pki, version, connections=2) as run:
        for _ in range(2):
            assert await client_outcome(lambda: gtls_client(pki, version, run.port)) == "ok"
    assert [secure["reused"] for secure in run.of("secure")] == [False, False] and run.errors == []


@BOTH
@pytest.mark.parametrize(("case", "reason", "alert"), [
    pytest.param("other-ca", "untrusted", "unknown certificate authority", id="other-ca"),
    pytest.param("other-name", "name-mismatch", "bad certificate", id="other-name"),
    pytest.param("revoked", "revoked", "revoked certificate", id="revoked"),
])
async def test_gtls_client_refuses_go_server(peer: Path, pkis: dict[str, PKI], version: str, case: str,
                                             reason: str, alert: str) -> None:
    """The reason word is gtls's; Go reads gtls's alert in TLS 1.2 (``remote error``). In TLS 1.3 OpenSSL's client
    sends it in plaintext, before its encrypted flight: Go tries to decrypt it (``bad record MAC``), as it does
    from ``s_client``."""
    pki = pkis["ec"]
    async with go_server(peer, pki, version, "read") as run:
        with pytest.raises(HandshakeError) as caught:
            if case == "other-ca":
                await gtls_client(pki, version, run.port, trusted_ca=str(pkis["other"].ca_file))
            elif case == "other-name":
                await gtls_client(pki, version, run.port, tls_target_name="other.example")
            else:
                await open_client(crl_options(pki, version, "server-revoked", server=False), run.port)
    assert caught.value.reason == reason
    if case != "other-ca":  # there the intermediate is the certificate at fault (depth 1)
        assert (caught.value.depth, caught.value.subject) == (0, "CN=localhost")
    expected = f"remote error: tls: {alert}" if version == "1.2" else "local error: tls: bad record MAC"
    assert run.errors == [expected] and not run.of("secure")


@BOTH
@pytest.mark.parametrize(("certificate", "message"), [
    pytest.param("none", "tls: client didn't provide a certificate", id="none"),
    pytest.param("other", "tls: failed to verify client certificate: x509: certificate signed by unknown authority",
                 id="other"),
])
async def test_go_server_refuses_gtls_client(peer: Path, pkis: dict[str, PKI], version: str, certificate: str,
                                             message: str) -> None:
    """Go's server sends bad_certificate for a missing and an untrusted client certificate alike: ``peer-alert``
    naming it, from the handshake in TLS 1.2 and from the first read in TLS 1.3 (gtls's client was done first)."""
    pki, other = pkis["ec"], pkis["other"]
    mutual = certificate == "other"
    ca = {"ca": str(other.ca_file)} if mutual else {}
    got: tuple[str, str, str | None]
    async with go_server(peer, pki, version, mutual=True, **ca) as run:
        try:
            stream = await gtls_client(pki, version, run.port, mutual=mutual)
        except HandshakeError as exc:
            got = ("handshake", exc.reason, exc.alert)
        else:
            async with stream:
                with pytest.raises(trio.BrokenResourceError) as caught:
                    await stream.receive_some()
            ending = classify_ending(caught.value)
            got = ("read", ending.word, ending.alert)
    assert got == ("read" if version == "1.3" else "handshake", "peer-alert", "bad_certificate")
    [error] = run.errors
    assert error.startswith(message) and not run.of("secure")


@pytest.mark.parametrize(("cfg", "options", "reason", "alert", "message"), [
    pytest.param({"version": "1.3"}, {"sec-protocol": "TLSv12"}, "protocol-version", "protocol_version",
                 "tls: client offered only unsupported versions: [303 302 301]", id="tls13-server-tls12-client"),
    pytest.param({"version": "1.2"}, {"sec-protocol": "TLSv13"}, "protocol-version", "protocol_version",
                 "tls: client offered only unsupported versions: [304]", id="tls12-server-tls13-client"),
    pytest.param({"version": "1.1"}, {}, "protocol-version", "protocol_version",
                 "tls: client offered only unsupported versions: [304 303]", id="tls11-server"),
    pytest.param({"version": "1.2", "ciphers": ["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"]},
                 {"sec-protocol": "TLSv12", "cipher-list": "ECDHE-ECDSA-AES128-GCM-SHA256"}, "peer-alert",
                 "handshake_failure", "tls: no cipher suite supported by both client and server", id="tls12-suites"),
    pytest.param({"version": "1.3"}, {"sec-protocol": "TLSv13", "cipher-list": "TLS_AES_128_CCM_SHA256"},
                 "peer-alert", "handshake_failure", "tls: no cipher suite supported by both client and server",
                 id="tls13-ccm-only"),
])
async def test_go_server_refuses_gtls_client_offer(peer: Path, pkis: dict[str, PKI], cfg: dict[str, Any],
                                                   options: dict[str, str], reason: str, alert: str,
                                                   message: str) -> None:
    """Go's server answers a version it does not allow with protocol_version (``protocol-version``, as from any
    server) and no shared suite with handshake_failure: ``peer-alert`` (``no-shared-cipher`` is a gtls server's
    word, spec §10; ``s_server`` sends the same alert). A TLS 1.2-only ClientHello has no supported_versions
    extension: Go lists the versions below its legacy_version (``[303 302 301]``)."""
    pki = pkis["ec"]
    cfg = {"version": "", **cfg}
    version = cfg.pop("version")
    async with go_server(peer, pki, version or None, **cfg) as run:
        with pytest.raises(HandshakeError) as caught:
            await open_client(TLSOptions.from_mapping({"trusted-ca": str(pki.ca_file), **options}), run.port)
    assert (caught.value.reason, caught.value.alert) == (reason, alert)
    assert run.errors == [message] and not run.of("secure")


@pytest.mark.parametrize("version", ["1.3", "1.2"])
async def test_go_server_curve_preferences(peer: Path, pkis: dict[str, PKI], version: str) -> None:
    """Go's server with CurvePreferences P-521 only: in TLS 1.3 it asks gtls's client, whose first key shares are
    for other groups, for a P-521 one (a HelloRetryRequest); in TLS 1.2 its ECDHE uses P-521."""
    pki = pkis["ec"]
    async with go_server(peer, pki, version, curves=["P521"]) as run:
        assert await client_outcome(lambda: gtls_client(pki, version, run.port)) == "ok"
    assert run.of("secure")[0]["protocol"] == f"TLSv{version}" and run.errors == []


async def test_alpn_gtls_client_go_server(peer: Path, pkis: dict[str, PKI]) -> None:
    """Go's server picks its own first choice among those offered; none shared: it refuses with
    no_application_protocol (Go 1.17 and later)."""
    pki = pkis["ec"]

    async def connect(port: int) -> TLSStream:
        return await open_tls_over_tcp_stream(LOCALHOST, port, pki.client_options(), server_hostname="localhost",
                                              alpn_protocols=["http/1.1", "h2"])

    async with go_server(peer, pki, None, alpn=["h2", "http/1.1"]) as run, await connect(run.port) as stream:
        assert stream.alpn_protocol == "h2"
    assert run.of("secure")[0]["alpn"] == "h2"
    async with go_server(peer, pki, None, alpn=["x"]) as run:
        with pytest.raises(HandshakeError) as caught:
            await connect(run.port)
    assert (caught.value.reason, caught.value.alert) == ("peer-alert", "no_application_protocol")
    assert run.errors == ["tls: client requested unsupported application protocols ([http/1.1 h2])"]


# --- chains longer than root → intermediate → leaf, both ways ------------------------------------------------------


async def test_two_intermediates_both_ways(peer: Path, pkis: dict[str, PKI], tmp_path: Path) -> None:
    """Leaves under two intermediates, each side sending both: Go verifies a path of 4 as client and as server,
    and gtls does too."""
    pki = pkis["ec"]
    lower = pki.intermediate.intermediate("gtls transport test lower intermediate")
    server, client = lower.leaf("localhost", dns=["localhost"]), lower.leaf("client.test", dns=["client.test"])
    files: dict[str, str] = {}
    for name, leaf in (("server", server), ("client", client)):
        files[name] = str(leaf.write_chain(tmp_path / f"{name}.pem"))
        files[f"{name}-key"] = str(leaf.write_key(tmp_path / f"{name}.key"))
    served_options = TLSOptions.from_mapping({"certificate": files["server"], "certificate-key": files["server-key"],
                                              "trusted-ca": str(pki.ca_file), "tls-mutual": "1"})
    async with gtls_server(served_options) as served:
        run = await go_client(peer, served.port, pki, None, cert=files["client"], key=files["client-key"])
    assert run.of("secure")[0]["verified"] == 4 and run.texts == ["hello\n"] and run.errors == []
    assert [event.subject for event in served.events] == ["CN=client.test"]
    client_options = pki.client_options(certificate=files["client"], certificate_key=files["client-key"],
                                        tls_target_name_check="host")
    async with (
        go(peer, role="server", ca=str(pki.ca_file), cert=files["server"], key=files["server-key"], mutual=True,
           action="echo") as run,
        await open_client(client_options, run.port) as stream,
    ):
        assert len(stream.peer_chain) == 3
    assert run.of("secure")[0]["verified"] == 4 and run.errors == []


# --- the peer-name rules: gtls's (DNS subjectAltNames, else the CN; no wildcards) beside Go's (no CN at all) ---------


NAME_CASES = [  # (certificate, reference name, gtls client, Go client)
    pytest.param({"common_name": "localhost"}, "localhost", "ok",
                 "x509: certificate relies on legacy Common Name field, use SANs instead", id="cn-only"),
    pytest.param({"common_name": "localhost", "dns": ["other.test"]}, "localhost", "name-mismatch",
                 "x509: certificate is valid for other.test, not localhost", id="san-hides-cn"),
    pytest.param({"common_name": "w", "dns": ["*.example.test"]}, "a.example.test", "name-mismatch", "ok",
                 id="wildcard"),
    pytest.param({"common_name": "s", "ips": [ipaddress.ip_address("127.0.0.1")]}, "127.0.0.1", "name-mismatch", "ok",
                 id="ip-san"),
    pytest.param({"common_name": "127.0.0.1"}, "127.0.0.1", "ok",
                 "x509: certificate relies on legacy Common Name field, use SANs instead", id="ip-in-cn"),
    pytest.param({"common_name": "x", "dns": ["localhost."]}, "localhost", "name-mismatch",
                 "x509: certificate is valid for localhost., not localhost", id="trailing-dot-in-san"),
]


@pytest.mark.parametrize(("names", "reference", "gtls_says", "go_says"), NAME_CASES)
async def test_peer_name_rule_beside_go(peer: Path, pkis: dict[str, PKI], tmp_path: Path, names: dict[str, Any],
                                        reference: str, gtls_says: str, go_says: str) -> None:
    """Where the two rules differ, each side keeps its own: Go ignores the CN (since Go 1.15) and takes wildcards
    and IP subjectAltNames; gtls compares DNS subjectAltNames, else the CN, as strings, without wildcards."""
    pki = pkis["ec"]
    leaf = pki.intermediate.leaf(**names)
    cert, key = leaf.write_chain(tmp_path / "leaf.pem"), leaf.write_key(tmp_path / "leaf.key")
    ip = reference[0].isdigit()
    async with go(peer, role="server", cert=str(cert), key=str(key), action="echo") as run:
        options = pki.client_options(tls_target_name_check="host")
        gtls_word = await client_outcome(lambda: open_tls_over_tcp_stream(
            LOCALHOST, run.port, options, server_hostname=None if ip else reference))
    assert gtls_word == gtls_says
    served_options = TLSOptions.from_mapping({"certificate": str(cert), "certificate-key": str(key),
                                              "trusted-ca": str(pki.ca_file)})
    async with gtls_server(served_options) as served:
        go_run = await go_client(peer, served.port, pki, None, servername=reference)
    assert (go_run.errors[0] if go_run.errors else "ok") == go_says


async def test_peer_name_case(peer: Path, pkis: dict[str, PKI], tmp_path: Path) -> None:
    """A certificate for ``Go.Example.Test``: gtls's client takes the name in any case and refuses another; Go's
    takes it in any case too. gtls's server reports the SNI as Go sent it; gtls's client sends its SNI in lower case
    (A-labels, ``gtls/pki/names.py``)."""
    pki = pkis["ec"]
    leaf = pki.intermediate.leaf("Go.Example.Test", dns=["Go.Example.Test"])
    cert, key = leaf.write_chain(tmp_path / "leaf.pem"), leaf.write_key(tmp_path / "leaf.key")
    words, seen = {}, []
    options = pki.client_options(tls_target_name_check="host")
    for name in ("go.example.test", "GO.EXAMPLE.TEST", "other.example.test"):
        async with go(peer, role="server", cert=str(cert), key=str(key), action="echo") as run:
            words[name] = await client_outcome(partial(open_client, options, run.port, name))
        seen += [secure["servername"] for secure in run.of("secure")]
    assert words == {"go.example.test": "ok", "GO.EXAMPLE.TEST": "ok", "other.example.test": "name-mismatch"}
    assert seen == ["go.example.test", "go.example.test"]
    served_options = TLSOptions.from_mapping({"certificate": str(cert), "certificate-key": str(key),
                                              "trusted-ca": str(pki.ca_file)})
    async with gtls_server(served_options) as served:
        run = await go_client(peer, served.port, pki, None, servername="gO.example.TEST")
    assert run.texts == ["hello\n"] and run.errors == []
    assert [event.server_name for event in served.events] == ["gO.example.TEST"]
