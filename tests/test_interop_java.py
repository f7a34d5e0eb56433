"""gtls in both roles against Java's own TLS stack (JSSE: ``SSLSocket``, ``SSLServerSocket``) over 127.0.0.1: TLS 1.2
and 1.3, ECDSA and RSA, simple and mutual TLS, checksummed data both ways, the ways a Java peer ends a connection
(``close()``, half close, the process ending), session resumption, refused, untrusted and revoked certificates, the
peer-name check, and KeyUpdates Java asks for. The Java peer is one source file the module writes to a temporary
folder and compiles once with ``javac`` (no jars: its KeyStore and TrustStore are built in memory from the PEM
certificates and a PKCS#8 DER copy of the key); it takes one JSON argument and prints one JSON event per line.
Skipped when ``java`` or ``javac`` is not installed.

What Java does that shapes the assertions (OpenJDK 17; the module passes with JDK 25 too):

* ``SSLSocket.close()`` in TLS 1.3 sends ``user_canceled``, then ``close_notify``: a clean end on gtls (OpenSSL alone
  reports it as an EOF without ``close_notify``). ``shutdownOutput()`` sends ``close_notify`` and keeps reading, in
  TLS 1.2 too; Java answers after gtls's TLS 1.3 ``send_eof()``.
* Java sends an alert for every refusal: its trust and HTTPS name checks (``certificate_unknown``) run inside the
  handshake, so gtls reads ``peer-alert`` where node gave an EOF. A missing client certificate: ``bad_certificate``
  (JDK 25: ``certificate_required`` in TLS 1.3, ``handshake_failure`` in TLS 1.2). In TLS 1.3 gtls's server refuses a
  Java client's certificate after Java's ``startHandshake()`` returned: Java meets the alert on its first read.
* When gtls's client refuses a Java server, it sends its alert and lingers (FIN, then it drains what Java still
  sends until Java closes): Java reads the alert. TLS 1.2: ``Received fatal alert: unknown_ca``; TLS 1.3:
  ``Insufficient buffer remaining for AEAD cipher fragment (2)``, since OpenSSL's client sends it in plaintext,
  before its own flight (JDK 25: ``SSLProtocolException``; JDK-8331682). (Closed at once, the socket held the rest of
  Java's flight and answered with a reset, and Java usually reported ``Broken pipe`` instead.)
* A Java client resumes sessions with the same ``SSLContext`` (TLS 1.2 and 1.3 tickets): gtls reports
  ``session_reused``.
* A Java peer that closes with gtls's bytes unread resets the connection, and its kernel may drop what it had not
  sent yet, its ``close_notify`` included: gtls then reads ``reset``. So the tests make Java read what gtls sends (a
  TLS 1.3 server's tickets, its answers to KeyUpdates) before it closes.
* JDK 25 puts the alert name first in its messages (``(unknown_ca) Received fatal alert: unknown_ca``); the
  tests drop it.
"""

from __future__ import annotations

import hashlib
import re
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
from cryptography.hazmat.primitives import serialization

from gtls import (
    HandshakeError,
    TLSOptions,
    TLSStream,
    classify_ending,
)
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
    open_client,
    read_all,
    reads_close_or_abort,
    send_eof_is_answered,
    send_eof_is_refused_on_tls12,
    sends_eof_first,
    server_options,
)
from tests.peers import INTEROP_MATRIX, PKI, write_pki

JAVA, JAVAC = shutil.which("java"), shutil.which("javac")
pytestmark = pytest.mark.skipif(JAVA is None or JAVAC is None, reason="the java and javac commands (a JDK) are not "
                                "installed: apt-get install default-jdk-headless to run the Java interop tests")

BOTH = pytest.mark.parametrize("version", ["1.3", "1.2"])
BULK = 1 << 20  # bytes each way in the integrity tests
STEP = 15.0  # bound on any Java run (the peer's own watchdog ends it after 10 s)

PEER_JAVA = r"""// gtls's Java (JSSE) test peer: one JSON argument (cfg), one JSON event per line on stdout. No jars.
import java.io.*;
import java.net.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.security.*;
import java.security.cert.*;
import java.security.spec.*;
import java.util.*;
import javax.net.ssl.*;

public final class Peer {
    static Map<String, Object> cfg;
    static SSLSession previous;  // a client's last session, to tell a resumed one (same creation time)
    static int producedKeyUpdates, consumedKeyUpdates;

    // --- one JSON event per line -------------------------------------------------------------------------------
    static synchronized void say(String event, Object... pairs) {
        StringBuilder b = new StringBuilder("{\"event\":").append(quote(event));
        for (int i = 0; i < pairs.length; i += 2)
            b.append(',').append(quote((String) pairs[i])).append(':').append(json(pairs[i + 1]));
        System.out.println(b.append('}'));
        System.out.flush();
    }

    static String json(Object v) {
        if (v == null || v instanceof Boolean || v instanceof Number) return String.valueOf(v);
        return quote(v.toString());
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    static String hex(byte[] bytes) {
        StringBuilder b = new StringBuilder();
        for (byte x : bytes) b.append(String.format("%02x", x));
        return b.toString();
    }

    // --- a small JSON reader: objects, arrays, strings, integers, booleans, null --------------------------------
    static String text;
    static int at;

    static char next() {
        while (Character.isWhitespace(text.charAt(at))) at++;
        return text.charAt(at);
    }

    static Object parse() {
        char c = next();
        if (c == '{') {
            Map<String, Object> m = new HashMap<>();
            at++;
            while (next() != '}') {
                String k = (String) parse();
                next();
                at++;  // the colon
                m.put(k, parse());
                if (next() == ',') at++;
            }
            at++;
            return m;
        }
        if (c == '[') {
            List<Object> l = new ArrayList<>();
            at++;
            while (next() != ']') { l.add(parse()); if (next() == ',') at++; }
            at++;
            return l;
        }
        if (c == '"') {
            StringBuilder b = new StringBuilder();
            for (at++; text.charAt(at) != '"'; at++) {
                char d = text.charAt(at);
                if (d == '\\') {
                    d = text.charAt(++at);
                    if (d == 'u') { d = (char) Integer.parseInt(text.substring(at + 1, at + 5), 16); at += 4; }
                    else if (d == 'n') d = '\n';
                    else if (d == 't') d = '\t';
                }
                b.append(d);
            }
            at++;
            return b.toString();
        }
        int start = at;
        while (at < text.length() && ",}] ".indexOf(text.charAt(at)) < 0) at++;
        String word = text.substring(start, at);
        if (word.equals("null")) return null;
        if (word.equals("true") || word.equals("false")) return Boolean.valueOf(word);
        return Long.valueOf(word);
    }

    static String str(String k) { return (String) cfg.get(k); }
    static long num(String k, long otherwise) { Object v = cfg.get(k); return v == null ? otherwise : (Long) v; }

    // --- the context: KeyStore and TrustStore in memory, from PEM certificates and a PKCS#8 DER key ---------------
    static SSLContext context() throws Exception {
        CertificateFactory certs = CertificateFactory.getInstance("X.509");
        char[] pass = "in-memory".toCharArray();
        KeyManager[] keyManagers = null;
        if (str("cert") != null) {
            Collection<? extends java.security.cert.Certificate> chain;
            try (InputStream in = new FileInputStream(str("cert"))) { chain = certs.generateCertificates(in); }
            KeyStore keys = KeyStore.getInstance(KeyStore.getDefaultType());
            keys.load(null, null);
            keys.setKeyEntry("me", key(Files.readAllBytes(Paths.get(str("key")))), pass,
                             chain.toArray(new java.security.cert.Certificate[0]));
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(keys, pass);
            keyManagers = kmf.getKeyManagers();
        }
        KeyStore trusted = KeyStore.getInstance(KeyStore.getDefaultType());
        trusted.load(null, null);
        int i = 0;
        try (InputStream in = new FileInputStream(str("ca"))) {
            for (java.security.cert.Certificate c : certs.generateCertificates(in))
                trusted.setCertificateEntry("ca" + i++, c);
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trusted);  // the given roots only, never the JDK's cacerts
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(keyManagers, tmf.getTrustManagers(), null);
        return context;
    }

    static PrivateKey key(byte[] der) throws Exception {
        for (String algorithm : new String[] {"EC", "RSA"}) {
            try {
                return KeyFactory.getInstance(algorithm).generatePrivate(new PKCS8EncodedKeySpec(der));
            } catch (InvalidKeySpecException e) {
                // the other algorithm
            }
        }
        throw new IllegalArgumentException("neither an EC nor an RSA PKCS#8 key");
    }

    static void limit(SSLParameters p) {
        if (str("version") != null) p.setProtocols(new String[] {"TLSv" + str("version")});
    }

    // --- what a connection does --------------------------------------------------------------------------------
    static void secure(SSLSocket s, int n) {
        SSLSession session = s.getSession();
        String peer = null, servername = null;
        try { peer = session.getPeerPrincipal().getName(); } catch (SSLPeerUnverifiedException e) { /* none */ }
        if (session instanceof ExtendedSSLSession) {
            for (SNIServerName name : ((ExtendedSSLSession) session).getRequestedServerNames())
                if (name instanceof SNIHostName) servername = ((SNIHostName) name).getAsciiName();
        }
        boolean reused = previous != null && session.getCreationTime() == previous.getCreationTime();
        previous = session;
        say("secure", "n", n, "protocol", session.getProtocol(), "peer", peer, "servername", servername,
            "reused", reused);
    }

    static String readAll(InputStream in) throws IOException {  // until the peer's close_notify
        ByteArrayOutputStream got = new ByteArrayOutputStream();
        byte[] buffer = new byte[16384];
        for (int n; (n = in.read(buffer)) != -1; ) got.write(buffer, 0, n);
        return got.toString("UTF-8");
    }

    static String readLine(InputStream in) throws IOException {
        StringBuilder b = new StringBuilder();
        for (int c; (c = in.read()) != -1; ) { b.append((char) c); if (c == '\n') break; }
        return b.toString();
    }

    // cfg.size random bytes in random chunks; the digest is reported once they are all written.
    static void upload(OutputStream out) throws Exception {
        MessageDigest sent = MessageDigest.getInstance("SHA-256");
        Random random = new Random();
        long size = num("size", 0);
        for (long left = size; left > 0; ) {
            byte[] chunk = new byte[(int) Math.min(left, 1 + random.nextInt(65536))];
            random.nextBytes(chunk);
            sent.update(chunk);
            out.write(chunk);
            left -= chunk.length;
        }
        out.flush();
        say("sent", "bytes", size, "sha256", hex(sent.digest()));
    }

    // Sends cfg.size bytes from a second thread while reading as many; both digests reported.
    static void bulk(SSLSocket s) throws Exception {
        Thread writer = new Thread(() -> {
            try { upload(s.getOutputStream()); } catch (Exception e) { error(e); }
        });
        writer.start();
        MessageDigest got = MessageDigest.getInstance("SHA-256");
        byte[] buffer = new byte[65536];
        long size = num("size", 0), received = 0;
        InputStream in = s.getInputStream();
        while (received < size) {
            int n = in.read(buffer, 0, (int) Math.min(buffer.length, size - received));
            if (n < 0) break;
            got.update(buffer, 0, n);
            received += n;
        }
        say("received", "bytes", received, "sha256", hex(got.digest()));
        writer.join(8000);
    }

    static void act(SSLSocket s) throws Exception {
        InputStream in = s.getInputStream();
        OutputStream out = s.getOutputStream();
        boolean server = str("role").equals("server");
        byte[] hello = "hello\n".getBytes(StandardCharsets.UTF_8);
        switch (str("action")) {
            case "echo":  // a server echoes until the peer's end; a client sends a line, reads it back, closes
                if (server) {
                    byte[] buffer = new byte[16384];
                    for (int n; (n = in.read(buffer)) != -1; ) out.write(buffer, 0, n);
                    say("end");
                } else {
                    out.write(hello);
                    say("data", "text", readLine(in));
                }
                break;
            case "bulk":
                bulk(s);
                break;
            case "close":  // a server's line, a pause, then close()
                out.write(hello);
                Thread.sleep(100);
                break;
            case "abort":  // a line (a client reads it back), then the process ends: a FIN without close_notify
                out.write(hello);
                if (!server) say("data", "text", readLine(in));
                Thread.sleep(100);
                say("abort");
                Runtime.getRuntime().halt(0);
                break;
            case "half":  // shutdownOutput() after a request, then the peer's answer
                out.write("request\n".getBytes(StandardCharsets.UTF_8));
                s.shutdownOutput();
                say("data", "text", readAll(in));
                break;
            case "upload":  // cfg.size bytes, shutdownOutput(), then all the peer answers
                upload(out);
                s.shutdownOutput();
                say("data", "text", readAll(in));
                break;
            case "answer":  // all the peer sends until its close_notify, then an answer
                say("data", "text", readAll(in));
                out.write("answer\n".getBytes(StandardCharsets.UTF_8));
                break;
            default:
                throw new IllegalArgumentException(str("action"));
        }
    }

    static void error(Exception e) {
        Throwable cause = e.getCause();
        say("error", "class", e.getClass().getName(), "message", String.valueOf(e.getMessage()),
            "cause", cause == null ? null : cause.toString());
    }

    static void run(SSLSocket s, int n) {
        try {
            s.setSoTimeout(8000);
            s.startHandshake();
            secure(s, n);
            act(s);
        } catch (Exception e) {
            error(e);
        } finally {
            try { s.close(); } catch (IOException e) { error(e); }
        }
    }

    static void client(SSLContext context) throws Exception {
        for (int n = 0; n < num("connections", 1); n++) {
            Socket raw = new Socket(InetAddress.getByName("127.0.0.1"), (int) num("port", 0));
            String name = str("servername");  // the socket's peer host: what JSSE's name check falls back to
            SSLSocket s = (SSLSocket) context.getSocketFactory().createSocket(
                raw, name == null ? "127.0.0.1" : name, raw.getPort(), true);
            SSLParameters p = s.getSSLParameters();
            limit(p);
            if (name != null) {  // SNI, and the name JSSE's HTTPS identification checks
                p.setServerNames(Collections.singletonList(new SNIHostName(name)));
                p.setEndpointIdentificationAlgorithm("HTTPS");
            }
            s.setSSLParameters(p);
            run(s, n);
        }
    }

    static void serve(SSLContext context) throws Exception {
        try (SSLServerSocket server = (SSLServerSocket) context.getServerSocketFactory().createServerSocket(
                0, 1, InetAddress.getByName("127.0.0.1"))) {
            SSLParameters p = server.getSSLParameters();
            limit(p);
            p.setNeedClientAuth(Boolean.TRUE.equals(cfg.get("mutual")));
            server.setSSLParameters(p);
            server.setSoTimeout(8000);
            say("listening", "port", server.getLocalPort());
            for (int n = 0; n < num("connections", 1); n++) run((SSLSocket) server.accept(), n);
        }
    }

    // TLS 1.3: Java asks for new keys (KeyUpdate, update_requested) after every 2^keyLimit bytes it sends. Its
    // debug log, read from stderr here, counts the KeyUpdates each way.
    static void countKeyUpdates() {
        Security.setProperty("jdk.tls.keyLimits", "AES/GCM/NoPadding KeyUpdate 2^" + cfg.get("keyLimit"));
        System.setProperty("javax.net.debug", "ssl:handshake");
        System.setErr(new PrintStream(new OutputStream() {
            final StringBuilder line = new StringBuilder();
            @Override public synchronized void write(int c) {
                if (c != '\n') { line.append((char) c); return; }
                if (line.indexOf("Produced KeyUpdate") >= 0) producedKeyUpdates++;
                if (line.indexOf("Consuming KeyUpdate") >= 0) consumedKeyUpdates++;
                line.setLength(0);
            }
        }, true));
    }

    public static void main(String[] args) throws Exception {
        text = args[0];
        @SuppressWarnings("unchecked")
        Map<String, Object> parsed = (Map<String, Object>) parse();
        cfg = parsed;
        Thread watchdog = new Thread(() -> {
            try { Thread.sleep(10000); } catch (InterruptedException e) { return; }
            say("watchdog");
            Runtime.getRuntime().halt(3);
        });
        watchdog.setDaemon(true);
        watchdog.start();
        if (cfg.get("keyLimit") != null) countKeyUpdates();
        SSLContext context = context();
        if (str("role").equals("server")) serve(context); else client(context);
        if (cfg.get("keyLimit") != null)
            say("keyUpdates", "produced", producedKeyUpdates, "consumed", consumedKeyUpdates);
    }
}
"""


@pytest.fixture(scope="session")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the compiled peer (``Peer.class``): javac runs once per session."""
    assert JAVAC is not None
    folder = tmp_path_factory.mktemp("java-peer")
    (folder / "Peer.java").write_text(PEER_JAVA)
    subprocess.run([JAVAC, "-d", str(folder), str(folder / "Peer.java")], check=True, capture_output=True,
                   timeout=120)
    return folder


def pkcs8_der(key: Path) -> Path:
    """A PKCS#8 DER copy of a PEM private key, beside it: what Java's KeyFactory reads."""
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    copy = key.with_suffix(".p8.der")
    copy.write_bytes(loaded.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    copy.chmod(0o600)
    return copy


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PKI]:
    made = {key: write_pki(tmp_path_factory.mktemp(f"java-{key}"), key_type=key) for key in ("ec", "rsa")}
    made["other"] = write_pki(tmp_path_factory.mktemp("java-other"))  # another root: refused by both
    for pki in made.values():
        pkcs8_der(pki.server_key)
        pkcs8_der(pki.client_key)
    return made


# --- the Java peer -------------------------------------------------------------------------------------------------


@dataclass
class JavaRun(PeerRun):
    @property
    def errors(self) -> list[str]:
        """The exceptions Java reported, as ``class: message``, without the ``(alert_name)`` newer JDKs put first."""
        return [f"{event['class']}: {re.sub(r'^[(][a-z_]+[)] ', '', event['message'])}" for event in self.of("error")]


@asynccontextmanager
async def java(peer: Path, **cfg: Any) -> AsyncIterator[JavaRun]:
    """Run the Java peer with ``cfg``. Inside the block a server's ``port`` is known; leaving it waits (bounded) for
    Java to finish, so every event is in."""
    assert JAVA is not None
    command = [JAVA, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", str(peer), "Peer"]
    async with json_peer(command, cfg, JavaRun(), STEP) as run:
        yield run


def key_file(pki_key: Path) -> str:
    return str(pki_key.with_suffix(".p8.der"))


async def java_client(peer: Path, port: int, pki: PKI, version: str | None, action: str = "echo", *,
                      mutual: bool = False, **cfg: Any) -> JavaRun:
    settings: dict[str, Any] = {"role": "client", "port": port, "ca": str(pki.ca_file), "servername": "localhost",
                                "version": version, "action": action}
    if mutual:
        settings.update(cert=str(pki.client_cert), key=key_file(pki.client_key))
    settings.update(cfg)
    async with java(peer, **settings) as run:
        pass
    return run


def java_server(peer: Path, pki: PKI, version: str | None, action: str = "echo", *, mutual: bool = False,
                **cfg: Any) -> AbstractAsyncContextManager[JavaRun]:
    settings: dict[str, Any] = {"role": "server", "ca": str(pki.ca_file), "cert": str(pki.server_cert),
                                "key": key_file(pki.server_key), "version": version, "action": action,
                                "mutual": mutual}
    settings.update(cfg)
    return java(peer, **settings)


# --- gtls server, Java client --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "key", "mutual"), INTEROP_MATRIX)
async def test_java_client_with_gtls_server(peer: Path, pkis: dict[str, PKI], version: str, key: str,
                                            mutual: bool) -> None:
    """A line there and back, then Java's close(): in TLS 1.3 user_canceled and close_notify, a clean end."""
    pki = pkis[key]
    async with gtls_server(server_options(pki, version, mutual)) as served:
        run = await java_client(peer, served.port, pki, version, mutual=mutual)
    [secure] = run.of("secure")
    assert (secure["protocol"], secure["peer"], secure["servername"]) == (f"TLSv{version}", "CN=localhost", "localhost")
    assert run.texts == ["hello\n"] and run.errors == []
    [event] = served.events
    assert event.ok and event.tls_version == f"TLSv{version}" and event.server_name == "localhost"
    assert event.subject == ("CN=client.test" if mutual else None)
    assert served.ends == []  # the echo loop met a clean end


@BOTH
async def test_data_integrity_java_client(peer: Path, pkis: dict[str, PKI], version: str) -> None:
    """Random chunks both ways at once, checksummed on each side; Java's close() then ends cleanly."""
    async def duplex(stream: TLSStream, served: Served) -> None:
        served.digests.append(await exchange(stream, BULK))
        assert await stream.receive_some() == b""  # Java's close_notify (behind user_canceled in TLS 1.3)

    pki = pkis["ec"]
    async with gtls_server(server_options(pki, version), duplex) as served:
        run = await java_client(peer, served.port, pki, version, "bulk", size=BULK)
    [(sent, got)] = served.digests
    assert run.of("sent")[0]["sha256"] == got and run.of("received")[0]["sha256"] == sent
    assert run.errors == [] and served.ends == []


@BOTH
async def test_java_client_that_ends_without_close_is_truncated(peer: Path, pkis: dict[str, PKI],
                                                                version: str) -> None:
    """The process ends after the echo (Runtime.halt): the kernel's FIN without close_notify."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, version)) as served:
        run = await java_client(peer, served.port, pki, version, "abort")
    assert run.texts == ["hello\n"] and run.of("abort") and served.ends == ["truncated"]


@BOTH
async def test_half_close_java_client_ends_first(peer: Path, pkis: dict[str, PKI], version: str) -> None:
    """shutdownOutput() sends close_notify and keeps reading (TLS 1.2 too): gtls reads the end and still answers."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, version), answer_after_end) as served:
        run = await java_client(peer, served.port, pki, version, "half")
    assert served.received == [b"request\n"] and run.texts == ["reply:request\n"] and run.errors == []
    assert served.ends == []


async def test_half_close_gtls_server_sends_eof(peer: Path, pkis: dict[str, PKI]) -> None:
    """TLS 1.3: gtls's send_eof() reaches Java as the end of its input; Java answers and gtls reads the answer."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, "1.3"), sends_eof_first) as served:
        run = await java_client(peer, served.port, pki, "1.3", "answer")
    assert run.texts == ["bye\n"] and served.received == [b"answer\n"] and run.errors == []


async def test_java_client_key_updates(peer: Path, pkis: dict[str, PKI]) -> None:
    """TLS 1.3 with ``jdk.tls.keyLimits`` at 16 KiB: Java asks for new keys again and again while it uploads 1 MiB
    (26 times, JDK 17); gtls answers each and reads every byte. Java half-closes and reads gtls's digest, and so all
    of gtls's answers before it closes (module docstring)."""
    async def digest(stream: TLSStream, served: Served) -> None:
        await read_all(stream, served)
        await stream.send_all(hashlib.sha256(served.received[0]).hexdigest().encode())

    pki = pkis["ec"]
    async with gtls_server(server_options(pki, "1.3"), digest) as served:
        run = await java_client(peer, served.port, pki, "1.3", "upload", size=BULK, keyLimit=14)
    [sent] = run.of("sent")
    assert len(served.received[0]) == BULK and run.texts == [sent["sha256"]] and run.errors == []
    [counts] = run.of("keyUpdates")
    assert counts["produced"] >= 8 and counts["consumed"] == counts["produced"], counts
    assert served.ends == []


@BOTH
@pytest.mark.parametrize("mutual", [False, True], ids=["simple", "mutual"])
async def test_java_client_resumes_sessions(peer: Path, pkis: dict[str, PKI], version: str, mutual: bool) -> None:
    """Three connections from one SSLContext: the second and third resume (TLS 1.2 and 1.3 tickets)."""
    pki = pkis["ec"]
    async with gtls_server(server_options(pki, version, mutual)) as served:
        run = await java_client(peer, served.port, pki, version, mutual=mutual, connections=3)
    assert [event.session_reused for event in served.events] == [False, True, True]
    assert [secure["reused"] for secure in run.of("secure")] == [False, True, True]
    assert [event.subject for event in served.events] == (["CN=client.test"] * 3 if mutual else [None] * 3)
    assert run.texts == ["hello\n"] * 3 and run.errors == [] and served.ends == []


@BOTH
@pytest.mark.parametrize(("certificate", "reason", "alert"), [
    pytest.param("other", "untrusted", "unknown_ca", id="other"),
    pytest.param("none", "no-peer-certificate", {"1.3": "certificate_required", "1.2": "handshake_failure"}, id="none"),
    pytest.param("revoked", "revoked", "certificate_revoked", id="revoked"),
])
async def test_gtls_server_refuses_java_client_certificate(peer: Path, pkis: dict[str, PKI], version: str,
                                                           certificate: str, reason: str,
                                                           alert: str | dict[str, str]) -> None:
    """The event has the reason word and the client's subject; Java gets the alert, in TLS 1.3 on its first read
    after startHandshake() returned."""
    pki, other = pkis["ec"], pkis["other"]
    options = server_options(pki, version, mutual=True)
    cert: dict[str, Any] = {}
    if certificate == "other":
        cert = {"cert": str(other.client_cert), "key": key_file(other.client_key)}
    elif certificate == "revoked":
        cert = {"cert": str(pki.client_cert), "key": key_file(pki.client_key)}
        options = crl_options(pki, version, "client-revoked", server=True)
    async with gtls_server(options) as served:
        run = await java_client(peer, served.port, pki, version, **cert)
    [event] = served.events
    assert not event.ok and event.reason == reason, event.describe()
    assert event.subject == (None if certificate == "none" else "CN=client.test")
    expected = alert if isinstance(alert, str) else alert[version]
    assert run.errors == [f"javax.net.ssl.SSLHandshakeException: Received fatal alert: {expected}"], run.events
    assert len(run.of("secure")) == (1 if version == "1.3" else 0) and run.texts == []


@BOTH
@pytest.mark.parametrize(("case", "message"), [
    pytest.param("other-ca", "PKIX path validation failed: java.security.cert.CertPathValidatorException: Path does "
                 "not chain with any of the trust anchors", id="other-ca"),
    pytest.param("other-name", "No subject alternative DNS name matching other.example found.", id="other-name"),
])
async def test_java_client_refuses_gtls_server(peer: Path, pkis: dict[str, PKI], version: str, case: str,
                                               message: str) -> None:
    """Java's trust manager and its HTTPS name check refuse inside the handshake with certificate_unknown."""
    pki = pkis["ec"]
    extra: dict[str, Any] = {"ca": str(pkis["other"].ca_file)} if case == "other-ca" else {
        "servername": "other.example"}
    async with gtls_server(server_options(pki, version), read_all) as served:
        run = await java_client(peer, served.port, pki, version, **extra)
    assert run.errors == [f"javax.net.ssl.SSLHandshakeException: {message}"] and not run.of("secure")
    [event] = served.events
    assert (event.reason, event.error and event.error.alert) == ("peer-alert", "certificate_unknown")
    assert served.received == []


# --- gtls client, Java server --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "key", "mutual"), INTEROP_MATRIX)
async def test_gtls_client_with_java_server(peer: Path, pkis: dict[str, PKI], version: str, key: str,
                                            mutual: bool) -> None:
    pki = pkis[key]
    async with (
        java_server(peer, pki, version, mutual=mutual) as run,
        await gtls_client(pki, version, run.port, mutual=mutual) as stream,
    ):
        await stream.send_all(b"hello\n")
        assert await stream.receive_some() == b"hello\n"
        assert stream.tls_version == f"TLSv{version}" and stream.server_name == "localhost"
        assert stream.peer_chain == [pki.server.cert, pki.intermediate.cert]
    [secure] = run.of("secure")
    assert (secure["protocol"], secure["servername"]) == (f"TLSv{version}", "localhost")
    assert secure["peer"] == ("CN=client.test" if mutual else None)
    assert run.of("end") and run.errors == []  # Java read gtls's close_notify


@BOTH
async def test_data_integrity_gtls_client(peer: Path, pkis: dict[str, PKI], version: str) -> None:
    pki = pkis["ec"]
    async with (
        java_server(peer, pki, version, "bulk", size=BULK) as run,
        await gtls_client(pki, version, run.port) as stream,
    ):
        sent, got = await exchange(stream, BULK)
        assert await stream.receive_some() == b""  # Java's close(): user_canceled and close_notify in TLS 1.3
    assert run.of("sent")[0]["sha256"] == got and run.of("received")[0]["sha256"] == sent
    assert run.errors == []


@BOTH
@pytest.mark.parametrize(("action", "word"), [("close", None), ("abort", "truncated")])
async def test_java_server_close_and_abort(peer: Path, pkis: dict[str, PKI], version: str, action: str,
                                           word: str | None) -> None:
    """close() is a clean end (TLS 1.3: behind user_canceled); the process ending without it is ``truncated``."""
    pki = pkis["ec"]
    await reads_close_or_abort(java_server(peer, pki, version, action), pki, version, word)


async def test_gtls_client_send_eof_to_java(peer: Path, pkis: dict[str, PKI]) -> None:
    """TLS 1.3: Java reads gtls's send_eof() as the end of its input and answers; gtls reads it, then the end."""
    pki = pkis["ec"]
    await send_eof_is_answered(java_server(peer, pki, "1.3", "answer"), pki)


async def test_gtls_client_send_eof_is_refused_on_tls12(peer: Path, pkis: dict[str, PKI]) -> None:
    pki = pkis["ec"]
    await send_eof_is_refused_on_tls12(java_server(peer, pki, "1.2"), pki)


@BOTH
@pytest.mark.parametrize(("case", "reason", "alert"), [
    pytest.param("other-ca", "untrusted", "unknown_ca", id="other-ca"),
    pytest.param("other-name", "name-mismatch", "bad_certificate", id="other-name"),
    pytest.param("revoked", "revoked", "certificate_revoked", id="revoked"),
])
async def test_gtls_client_refuses_java_server(peer: Path, pkis: dict[str, PKI], version: str, case: str,
                                               reason: str, alert: str) -> None:
    """The reason word is gtls's; Java reads gtls's alert (gtls lingers before it closes), which in TLS 1.3 it
    cannot decrypt (module docstring): it never calls the handshake done."""
    pki = pkis["ec"]
    async with java_server(peer, pki, version) as run:
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
    [error] = run.of("error")
    if version == "1.2":
        assert run.errors == [f"javax.net.ssl.SSLHandshakeException: Received fatal alert: {alert}"]
    else:
        assert error["class"] in ("javax.net.ssl.SSLHandshakeException", "javax.net.ssl.SSLProtocolException")
        assert error["message"].startswith("Insufficient buffer remaining for AEAD cipher fragment (2)"), run.events
    assert not run.of("secure")


@BOTH
@pytest.mark.parametrize(("certificate", "message"), [
    pytest.param("none", "Empty client certificate chain", id="none"),
    pytest.param("other", "PKIX path validation failed: java.security.cert.CertPathValidatorException: Path does "
                 "not chain with any of the trust anchors", id="other"),
])
async def test_java_server_refuses_gtls_client(peer: Path, pkis: dict[str, PKI], version: str, certificate: str,
                                               message: str) -> None:
    """``peer-alert`` naming Java's alert: a HandshakeError in TLS 1.2, the first read's end in TLS 1.3 (gtls's client
    was done before Java judged its certificate). No certificate: JDK 17 sends bad_certificate, JDK 25
    certificate_required (TLS 1.3) or handshake_failure (TLS 1.2)."""
    pki, other = pkis["ec"], pkis["other"]
    mutual = certificate == "other"
    ca = {"ca": str(other.ca_file)} if mutual else {}
    got: tuple[str, str, str | None]
    async with java_server(peer, pki, version, mutual=True, **ca) as run:
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
    alerts = {"certificate_unknown"} if mutual else {
        "bad_certificate", "certificate_required" if version == "1.3" else "handshake_failure"}
    assert got[:2] == ("read" if version == "1.3" else "handshake", "peer-alert") and got[2] in alerts, got
    assert run.errors == [f"javax.net.ssl.SSLHandshakeException: {message}"] and not run.of("secure")


# --- the peer-name check: case-insensitive on both sides -----------------------------------------------------------


async def test_peer_name_case(peer: Path, pkis: dict[str, PKI], tmp_path: Path) -> None:
    """A certificate for ``Java.Example.Test``: gtls's client takes the name in any case and refuses another name;
    Java's HTTPS check takes it in any case too, and gtls's server reports the SNI as Java sent it."""
    pki = pkis["ec"]
    leaf = pki.intermediate.leaf("Java.Example.Test", dns=["Java.Example.Test"])
    cert, key = leaf.write_chain(tmp_path / "leaf.pem"), pkcs8_der(leaf.write_key(tmp_path / "leaf.key"))
    words = {}
    options = pki.client_options(tls_target_name_check="host")
    for name in ("java.example.test", "JAVA.EXAMPLE.TEST", "other.example.test"):
        async with java(peer, role="server", ca=str(pki.ca_file), cert=str(cert), key=str(key),
                        action="echo") as run:
            words[name] = await client_outcome(partial(open_client, options, run.port, name))
    assert words == {"java.example.test": "ok", "JAVA.EXAMPLE.TEST": "ok", "other.example.test": "name-mismatch"}
    served_options = TLSOptions.from_mapping({"certificate": str(cert), "certificate-key": str(tmp_path / "leaf.key"),
                                              "trusted-ca": str(pki.ca_file)})
    async with gtls_server(served_options) as served:
        run = await java_client(peer, served.port, pki, None, servername="jAVA.example.TEST")
    assert run.texts == ["hello\n"] and run.errors == []
    assert [event.server_name for event in served.events] == ["jAVA.example.TEST"]
