//! The relay's protocol state ([`Relay`]) driven by transcripts in any
//! chunking with an in-memory journal (forwarding unchanged, EHLO
//! rewriting, pipelining, a refused recipient, the journal down before MAIL
//! FROM and at the end of the data, STARTTLS injection), and the whole
//! relay over loopback TCP and TLS with a scripted server.

use std::cell::Cell;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use registre_model::Action;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::*;

const CANARY: &str = "CANARY-41ac09";

/// A relay and everything it sent each way, with a journal that takes
/// traces or refuses them.
struct Harness {
    relay: Relay,
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    traces: Vec<Trace>,
    ready: Cell<bool>,
    records: bool,
    closed: bool,
    handshakes: usize,
    discarded: u64,
    chunk: usize,
}

impl Harness {
    fn new(listen: ListenTls, chunk: usize) -> Self {
        Self {
            relay: Relay::with(
                Arc::default(),
                Limits::default(),
                listen,
                ConnectionInfo::default(),
            ),
            to_server: Vec::new(),
            to_client: Vec::new(),
            traces: Vec::new(),
            ready: Cell::new(true),
            records: true,
            closed: false,
            handshakes: 0,
            discarded: 0,
            chunk,
        }
    }

    fn apply(&mut self, plan: Plan) {
        assert!(!self.closed, "bytes after the connection closed");
        let recorded = self.records;
        if recorded {
            self.traces.extend(plan.traces);
        }
        self.to_server.extend_from_slice(&plan.to_server);
        let (out, close) = resolve(plan.to_client, recorded);
        self.to_client.extend_from_slice(&out);
        self.closed = close;
        if plan.starttls {
            self.handshakes += 1;
            let (traces, discarded) = self.relay.client_tls_started();
            self.traces.extend(traces);
            self.discarded += discarded;
        }
    }

    /// Client bytes, `chunk` at a time.
    fn c(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        for piece in bytes.as_ref().chunks(self.chunk) {
            let ready = || self.ready.get();
            let plan = self
                .relay
                .client_bytes(piece, &ready)
                .expect("client bytes");
            self.apply(plan);
        }
        self
    }

    /// Client bytes in one read (an injection behind STARTTLS arrives in
    /// the same packet; bytes sent after the proxy's 220 would go to the
    /// TLS handshake, not to the parser).
    fn c_at_once(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        let ready = || self.ready.get();
        let plan = self
            .relay
            .client_bytes(bytes.as_ref(), &ready)
            .expect("client bytes");
        self.apply(plan);
        self
    }

    /// Server bytes, `chunk` at a time.
    fn s(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        for piece in bytes.as_ref().chunks(self.chunk) {
            let ready = || self.ready.get();
            let plan = self
                .relay
                .server_bytes(piece, &ready)
                .expect("server bytes");
            self.apply(plan);
        }
        self
    }

    fn finish(&mut self) -> &mut Self {
        let traces = self.relay.finish();
        self.traces.extend(traces);
        self
    }

    fn client_text(&self) -> String {
        String::from_utf8_lossy(&self.to_client).into_owned()
    }

    fn server_text(&self) -> String {
        String::from_utf8_lossy(&self.to_server).into_owned()
    }

    fn actions(&self) -> Vec<Action> {
        self.traces.iter().map(|t| t.action.clone()).collect()
    }
}

const CHUNKS: &[usize] = &[1, 2, 3, 5, 7, 64, 16 * 1024];

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

const GREETING: &str = "220 mx.hopital.mssante.fr ESMTP Postfix\r\n";
const EHLO_REPLY: &str = "250-mx.hopital.mssante.fr\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
    250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-BURL imap\r\n250-XCLIENT NAME ADDR\r\n\
    250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 CHUNKING\r\n";
/// What an implicit-TLS client sees: no STARTTLS, no BURL, no XCLIENT.
const EHLO_TLS: &str = "250-mx.hopital.mssante.fr\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
    250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 CHUNKING\r\n";

fn message() -> String {
    format!(
        "Subject: {CANARY}\r\n\r\nBonjour {CANARY}\r\n..point\r\n\
         Content-Disposition: attachment; filename={CANARY}.pdf\r\n\r\nJVBERi0{CANARY}\r\n"
    )
}

/// An authenticated session up to MAIL.
fn login(h: &mut Harness) {
    let plain = b64(&format!("\0dr.martin\0pw-{CANARY}"));
    h.s(GREETING)
        .c("EHLO client.local\r\n")
        .s(EHLO_REPLY)
        .c(format!("AUTH PLAIN {plain}\r\n"))
        .s("235 2.7.0 Authentication successful\r\n");
}

#[test]
fn forwards_unchanged_but_the_ehlo_reply_in_any_chunking() {
    for &chunk in CHUNKS {
        let mut h = Harness::new(ListenTls::Implicit, chunk);
        login(&mut h);
        let client_commands = "MAIL FROM:<dr.martin@hopital.mssante.fr> SIZE=300\r\n\
             RCPT TO:<patient.x@hopital.mssante.fr>\r\nRCPT TO:<refuse@hopital.mssante.fr>\r\nDATA\r\n";
        let data = format!("{}.\r\n", message());
        h.c(client_commands)
            .s("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.7.1 <refuse@hopital.mssante.fr>: Recipient address rejected\r\n354 End data with <CR><LF>.<CR><LF>\r\n")
            .c(&data)
            .s("250 2.0.0 Ok: queued as 4F2A1C3B9D\r\n");
        let bdat = format!("Subject: {CANARY}\r\n\r\nsecond\r\n");
        h.c(format!(
            "MAIL FROM:<dr.martin@hopital.mssante.fr>\r\nRCPT TO:<a@x.fr>\r\nBDAT {} LAST\r\n{bdat}",
            bdat.len()
        ))
        .s("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as 77AB\r\n")
        .c("QUIT\r\n")
        .s("221 2.0.0 Bye\r\n")
        .finish();

        let plain = b64(&format!("\0dr.martin\0pw-{CANARY}"));
        let sent = format!(
            "EHLO client.local\r\nAUTH PLAIN {plain}\r\n{client_commands}{data}\
             MAIL FROM:<dr.martin@hopital.mssante.fr>\r\nRCPT TO:<a@x.fr>\r\nBDAT {} LAST\r\n{bdat}QUIT\r\n",
            bdat.len()
        );
        assert_eq!(h.server_text(), sent, "chunk {chunk}");
        let received = format!(
            "{GREETING}{EHLO_TLS}235 2.7.0 Authentication successful\r\n\
             250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.7.1 <refuse@hopital.mssante.fr>: Recipient address rejected\r\n\
             354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as 4F2A1C3B9D\r\n\
             250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as 77AB\r\n221 2.0.0 Bye\r\n"
        );
        assert_eq!(h.client_text(), received, "chunk {chunk}");
        assert_eq!(
            h.actions(),
            [
                Action::Connexion,
                Action::Envoi,
                Action::Envoi,
                Action::Deconnexion
            ],
            "chunk {chunk}"
        );
        let envoi = &h.traces[1];
        assert_eq!(
            envoi.response.as_ref().and_then(|r| r.text.as_deref()),
            Some("2.0.0 Ok: queued as 4F2A1C3B9D")
        );
        assert!(
            envoi
                .request
                .as_deref()
                .is_some_and(|r| r.contains("RCPT TO:<refuse@hopital.mssante.fr> → 550 5.7.1"))
        );
        let debug = format!("{:?}", h.traces);
        assert!(!debug.contains(CANARY), "canary in traces");
    }
}

#[test]
fn message_data_is_streamed_not_buffered() {
    let mut h = Harness::new(ListenTls::Implicit, 16 * 1024);
    login(&mut h);
    h.c("MAIL FROM:<a@b.fr>\r\nRCPT TO:<c@d.fr>\r\nDATA\r\n")
        .s("250 ok\r\n250 ok\r\n354 go\r\n");
    let line = format!("{CANARY} 0123456789abcdef0123456789abcdef\r\n");
    let mut sent = 0;
    for _ in 0..2000 {
        let before = h.to_server.len();
        h.c(&line);
        sent += line.len();
        assert_eq!(h.to_server.len() - before, line.len(), "forwarded at once");
        assert!(h.relay.client.held() < 64, "held {}", h.relay.client.held());
    }
    h.c(".\r\n").s("250 2.0.0 Ok: queued as Q\r\n");
    let envoi = h.traces.last().expect("envoi");
    assert_eq!(
        envoi.target.as_ref().and_then(|t| t.size),
        Some(sent as u64)
    );
}

#[test]
fn journal_down_refuses_mail_and_its_pipelined_commands_in_order() {
    for &chunk in CHUNKS {
        let mut h = Harness::new(ListenTls::Implicit, chunk);
        login(&mut h);
        let server_so_far = h.to_server.len();
        let traces_so_far = h.traces.len();
        h.ready.set(false);
        h.c("RSET\r\nMAIL FROM:<dr.martin@hopital.mssante.fr>\r\nRCPT TO:<a@x.fr>\r\nRCPT TO:<b@x.fr>\r\nDATA\r\n");
        // Nothing answered before the server's reply to RSET.
        let client_so_far = h.client_text();
        h.s("250 2.0.0 Ok\r\n");
        let bdat = format!("{CANARY} chunk\r\n");
        h.c(format!("BDAT {} LAST\r\n{bdat}", bdat.len()));
        h.ready.set(true);
        h.c("NOOP\r\n").s("250 2.0.0 Ok\r\n");
        assert_eq!(
            &h.server_text()[server_so_far..],
            "RSET\r\nNOOP\r\n",
            "chunk {chunk}"
        );
        assert_eq!(
            &h.client_text()[client_so_far.len()..],
            "250 2.0.0 Ok\r\n\
             451 4.3.0 journal unavailable, try again later\r\n\
             503 5.5.1 MAIL transaction refused: journal unavailable\r\n\
             503 5.5.1 MAIL transaction refused: journal unavailable\r\n\
             503 5.5.1 MAIL transaction refused: journal unavailable\r\n\
             503 5.5.1 MAIL transaction refused: journal unavailable\r\n\
             250 2.0.0 Ok\r\n",
            "chunk {chunk}"
        );
        assert_eq!(h.traces.len(), traces_so_far, "nothing traced");
    }
}

#[test]
fn journal_down_refuses_auth() {
    for &chunk in CHUNKS {
        let mut h = Harness::new(ListenTls::Implicit, chunk);
        h.s(GREETING).c("EHLO c\r\n").s(EHLO_REPLY);
        h.ready.set(false);
        let before = h.to_server.len();
        h.c("AUTH LOGIN\r\n")
            .c(format!("AUTH PLAIN {}\r\n", b64(&format!("\0u\0{CANARY}"))))
            .c("NOOP\r\n")
            .s("250 2.0.0 Ok\r\n");
        assert_eq!(&h.server_text()[before..], "NOOP\r\n", "chunk {chunk}");
        assert!(
            h.client_text().ends_with(
                "454 4.7.0 journal unavailable\r\n454 4.7.0 journal unavailable\r\n250 2.0.0 Ok\r\n"
            ),
            "chunk {chunk}: {}",
            h.client_text()
        );
        assert!(h.traces.is_empty());
    }
}

#[test]
fn a_send_that_cannot_be_traced_is_not_acknowledged() {
    for &chunk in CHUNKS {
        let mut h = Harness::new(ListenTls::Implicit, chunk);
        login(&mut h);
        h.c("MAIL FROM:<a@b.fr>\r\nRCPT TO:<c@d.fr>\r\nDATA\r\n")
            .s("250 ok\r\n250 ok\r\n354 go\r\n")
            .c(format!("{}.\r\n", message()));
        // The journal fails between MAIL FROM and the end of the data.
        h.records = false;
        h.s("250 2.0.0 Ok: queued as 4F2A1C3B9D\r\n");
        assert!(
            h.client_text()
                .ends_with("354 go\r\n451 4.3.0 journal unavailable, message status unknown\r\n"),
            "chunk {chunk}"
        );
        assert!(!h.closed);
        // A refused transaction's trace failing changes nothing.
        h.c("MAIL FROM:<a@b.fr>\r\n")
            .s("452 4.3.1 Insufficient system storage\r\n");
        assert!(
            h.client_text()
                .ends_with("452 4.3.1 Insufficient system storage\r\n")
        );
    }
    // A login that cannot be traced: refused, and the connection closes.
    let mut h = Harness::new(ListenTls::Implicit, 7);
    h.s(GREETING).c("EHLO c\r\n").s(EHLO_REPLY);
    h.records = false;
    h.c(format!("AUTH PLAIN {}\r\n", b64("\0u\0pw")))
        .s("235 2.7.0 Authentication successful\r\n");
    assert!(
        h.client_text()
            .ends_with("454 4.7.0 journal unavailable\r\n")
    );
    assert!(h.closed);
}

#[test]
fn starttls_injection_is_discarded_and_ehlo_rewritten() {
    for &chunk in CHUNKS {
        let mut h = Harness::new(ListenTls::Starttls, chunk);
        h.s(GREETING)
            .c("EHLO client.local\r\n")
            .s("250-mx.hopital.mssante.fr\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 100\r\n");
        // Plaintext: AUTH hidden, STARTTLS offered.
        assert!(
            h.client_text().ends_with(
                "250-mx.hopital.mssante.fr\r\n250-PIPELINING\r\n250-SIZE 100\r\n250 STARTTLS\r\n"
            ),
            "chunk {chunk}: {}",
            h.client_text()
        );
        // Nothing but EHLO, HELO, NOOP, RSET and QUIT before TLS.
        let before = h.to_server.len();
        h.c(format!("AUTH PLAIN {}\r\n", b64(&format!("\0u\0{CANARY}"))))
            .c("MAIL FROM:<a@b.fr>\r\n");
        assert!(h.client_text().ends_with(
            "530 5.7.0 Must issue a STARTTLS command first\r\n530 5.7.0 Must issue a STARTTLS command first\r\n"
        ));
        // STARTTLS with commands injected behind it in the same packet.
        let injected =
            "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@hopital.mssante.fr>\r\nDATA\r\n";
        h.c_at_once(format!("STARTTLS\r\n{injected}"));
        assert_eq!(h.handshakes, 1, "chunk {chunk}");
        assert_eq!(h.discarded, injected.len() as u64);
        assert!(
            h.client_text()
                .ends_with("250 STARTTLS\r\n530 5.7.0 Must issue a STARTTLS command first\r\n530 5.7.0 Must issue a STARTTLS command first\r\n220 2.0.0 Ready to start TLS\r\n")
        );
        assert_eq!(h.to_server.len(), before, "nothing forwarded");
        // Inside TLS: the parser starts over, EHLO goes to the server, its
        // reply loses STARTTLS and keeps AUTH.
        h.c("EHLO client.local\r\n").s(EHLO_REPLY);
        assert!(h.client_text().ends_with(EHLO_TLS));
        h.c("STARTTLS\r\n").c("NOOP\r\n").s("250 2.0.0 Ok\r\n");
        assert!(
            h.client_text()
                .ends_with("503 5.5.1 TLS already active\r\n250 2.0.0 Ok\r\n")
        );
        assert_eq!(
            &h.server_text()[before..],
            "EHLO client.local\r\nNOOP\r\n",
            "chunk {chunk}"
        );
        assert!(!h.server_text().contains("evil"));
        assert!(h.traces.is_empty());
    }
}

#[test]
fn starttls_waits_for_the_replies_owed_before_it() {
    let mut h = Harness::new(ListenTls::Starttls, 1024);
    h.s(GREETING).c("EHLO c\r\nSTARTTLS\r\n");
    assert_eq!(h.handshakes, 0);
    assert_eq!(h.client_text(), GREETING);
    // Injected in a later packet, still before the 220: discarded too.
    h.c("MAIL FROM:<evil@attacker.example>\r\n");
    h.s("250 mx\r\n");
    assert_eq!(h.handshakes, 1);
    assert_eq!(h.discarded, 35);
    assert_eq!(h.server_text(), "EHLO c\r\n");
    assert_eq!(
        h.client_text(),
        format!("{GREETING}250-mx\r\n250 STARTTLS\r\n220 2.0.0 Ready to start TLS\r\n")
    );
}

#[test]
fn refused_data_releases_the_held_bytes_as_commands() {
    for &chunk in CHUNKS {
        let mut h = Harness::new(ListenTls::Implicit, chunk);
        login(&mut h);
        let before = h.to_server.len();
        // Every recipient refused, DATA refused: what followed DATA is
        // held until the server's answer, then relayed as commands.
        h.c("MAIL FROM:<a@b.fr>\r\nRCPT TO:<nobody@b.fr>\r\nDATA\r\nNOOP\r\n");
        assert_eq!(
            &h.server_text()[before..],
            "MAIL FROM:<a@b.fr>\r\nRCPT TO:<nobody@b.fr>\r\nDATA\r\n",
            "chunk {chunk}"
        );
        h.s("250 2.1.0 Ok\r\n550 5.1.1 <nobody@b.fr>: Recipient address rejected\r\n554 5.5.1 Error: no valid recipients\r\n");
        assert!(
            h.server_text().ends_with("DATA\r\nNOOP\r\n"),
            "chunk {chunk}"
        );
        h.s("250 2.0.0 Ok\r\n");
        assert!(
            h.client_text()
                .ends_with("554 5.5.1 Error: no valid recipients\r\n250 2.0.0 Ok\r\n")
        );
        let envoi = h.traces.last().expect("envoi");
        assert_eq!(envoi.action, Action::Envoi);
        assert_eq!(
            envoi.response.as_ref().map(|r| r.status.as_str()),
            Some("554")
        );
        assert_eq!(
            envoi.outcome,
            Some(registre_model::Outcome::Failure),
            "chunk {chunk}"
        );
    }
}

#[test]
fn a_parse_error_forwards_nothing() {
    let mut h = Harness::new(ListenTls::Implicit, 1024);
    h.s(GREETING);
    let mut line = b"NOOP ".to_vec();
    line.extend(std::iter::repeat_n(b'x', 8 * 1024));
    let ready = || true;
    assert!(matches!(
        h.relay.client_bytes(&line, &ready),
        Err(SmtpRelayError::Parse(_))
    ));
    assert!(h.to_server.is_empty());
    let mut reply = b"250-".to_vec();
    reply.extend(std::iter::repeat_n(b'y', 8 * 1024));
    assert!(h.relay.server_bytes(&reply, &ready).is_err());
}

#[test]
fn ehlo_rewriting_edge_cases() {
    let relay = Relay::with(
        Arc::default(),
        Limits::default(),
        ListenTls::Starttls,
        ConnectionInfo::default(),
    );
    assert_eq!(
        relay.rewrite_ehlo(b"250 mx\r\n").as_deref(),
        Some(&b"250-mx\r\n250 STARTTLS\r\n"[..])
    );
    assert_eq!(
        relay.rewrite_ehlo(b"250\r\n").as_deref(),
        Some(&b"250-\r\n250 STARTTLS\r\n"[..])
    );
    assert_eq!(
        relay
            .rewrite_ehlo(b"250-mx\r\n250-AUTH=PLAIN\r\n250-auth plain\r\n250 STARTTLS\r\n")
            .as_deref(),
        Some(&b"250-mx\r\n250 STARTTLS\r\n"[..])
    );
    let tls = Relay::with(
        Arc::default(),
        Limits::default(),
        ListenTls::Implicit,
        ConnectionInfo::default(),
    );
    assert_eq!(tls.rewrite_ehlo(b"250-mx\r\n250 SIZE 10\r\n"), None);
    assert_eq!(
        tls.rewrite_ehlo(b"250-mx\r\n250-AUTH=PLAIN\r\n250 BURL imap\r\n")
            .as_deref(),
        Some(&b"250-mx\r\n250 AUTH=PLAIN\r\n"[..])
    );
}

// ---- the whole relay over loopback: TCP, TLS, a scripted server ----

/// A journal that keeps the traces.
#[derive(Default)]
struct Memory {
    traces: Mutex<Vec<Trace>>,
}

impl Journal for Memory {
    type Error = io::Error;

    async fn record(&self, traces: Vec<Trace>) -> Result<(), io::Error> {
        self.traces.lock().expect("lock").extend(traces);
        Ok(())
    }
}

fn tls_pair() -> (TlsAcceptor, TlsConnector) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        TlsAcceptor::from(Arc::new(server)),
        TlsConnector::from(Arc::new(client)),
    )
}

/// A plaintext SMTP server answering each line from a script; returns
/// everything it received.
async fn scripted_server(listener: TcpListener) -> Vec<u8> {
    let (mut tcp, _) = listener.accept().await.expect("accept");
    tcp.write_all(b"220 mx ESMTP\r\n").await.expect("greeting");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let mut in_data = false;
    let mut line_start = 0;
    loop {
        let n = tcp.read(&mut buf).await.expect("read");
        if n == 0 {
            return received;
        }
        received.extend_from_slice(&buf[..n]);
        while let Some(i) = received[line_start..].iter().position(|&b| b == b'\n') {
            let line = received[line_start..line_start + i + 1].to_vec();
            line_start += i + 1;
            let reply: &[u8] = if in_data {
                if line == b".\r\n" {
                    in_data = false;
                    b"250 2.0.0 Ok: queued as ABC123\r\n"
                } else {
                    continue;
                }
            } else if line.starts_with(b"EHLO") {
                b"250-mx\r\n250-PIPELINING\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"
            } else if line.starts_with(b"AUTH") {
                b"235 2.7.0 Authentication successful\r\n"
            } else if line.starts_with(b"DATA") {
                in_data = true;
                b"354 go\r\n"
            } else if line.starts_with(b"QUIT") {
                tcp.write_all(b"221 2.0.0 Bye\r\n").await.expect("write");
                return received;
            } else {
                b"250 2.0.0 Ok\r\n"
            };
            tcp.write_all(reply).await.expect("write");
        }
    }
}

/// Reads until `want` has been received (or the peer closed).
async fn read_until<S: AsyncRead + Unpin>(stream: &mut S, want: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(want) {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn starttls_through_the_relay_over_tcp_discards_injected_commands() {
    let (acceptor, connector) = tls_pair();
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream_addr = upstream.local_addr().expect("addr");
    let server = tokio::spawn(scripted_server(upstream));
    let config = Arc::new(SmtpRelayConfig {
        listen_tls: ListenTls::Starttls,
        acceptor,
        upstream: upstream_addr.to_string(),
        upstream_tls: UpstreamTls::None,
        upstream_name: ServerName::try_from("localhost").expect("name"),
        connector: connector.clone(),
        helo_name: "proxy.test".to_owned(),
        tracer: Arc::default(),
        limits: Limits::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let proxy_addr = listener.local_addr().expect("addr");
    let journal = Arc::new(Memory::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(serve(listener, config, journal.clone(), async {
        let _ = stopped.await;
    }));

    let mut tcp = TcpStream::connect(proxy_addr).await.expect("connect");
    assert!(read_until(&mut tcp, "\r\n").await.starts_with("220 mx"));
    tcp.write_all(b"EHLO c\r\n").await.expect("write");
    let ehlo = read_until(&mut tcp, "250 ").await;
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    tcp.write_all(b"STARTTLS\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<x@y.fr>\r\n")
        .await
        .expect("write");
    assert_eq!(
        read_until(&mut tcp, "\r\n").await,
        "220 2.0.0 Ready to start TLS\r\n"
    );
    let mut tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    tls.write_all(b"EHLO c\r\n").await.expect("write");
    let ehlo = read_until(&mut tls, "250 ").await;
    assert!(
        !ehlo.contains("STARTTLS") && ehlo.contains("AUTH PLAIN"),
        "{ehlo}"
    );
    let plain = b64(&format!("\0dr.martin\0pw-{CANARY}"));
    tls.write_all(format!("AUTH PLAIN {plain}\r\n").as_bytes())
        .await
        .expect("write");
    read_until(&mut tls, "235 ").await;
    tls.write_all(b"MAIL FROM:<dr.martin@b.fr>\r\nRCPT TO:<c@d.fr>\r\nDATA\r\n")
        .await
        .expect("write");
    read_until(&mut tls, "354 ").await;
    tls.write_all(format!("Subject: {CANARY}\r\n\r\nhello\r\n.\r\n").as_bytes())
        .await
        .expect("write");
    assert!(
        read_until(&mut tls, "ABC123")
            .await
            .contains("queued as ABC123")
    );
    tls.write_all(b"QUIT\r\n").await.expect("write");
    read_until(&mut tls, "221 ").await;
    drop(tls);

    let received = String::from_utf8(server.await.expect("server")).expect("utf-8");
    assert_eq!(
        received,
        format!(
            "EHLO c\r\nEHLO c\r\nAUTH PLAIN {plain}\r\nMAIL FROM:<dr.martin@b.fr>\r\nRCPT TO:<c@d.fr>\r\nDATA\r\n\
             Subject: {CANARY}\r\n\r\nhello\r\n.\r\nQUIT\r\n"
        )
    );
    let _ = stop.send(());
    relay.await.expect("join").expect("serve");
    let traces = journal.traces.lock().expect("lock").clone();
    let actions: Vec<Action> = traces.iter().map(|t| t.action.clone()).collect();
    assert_eq!(
        actions,
        [Action::Connexion, Action::Envoi, Action::Deconnexion]
    );
    assert!(
        traces[1]
            .response
            .as_ref()
            .and_then(|r| r.text.as_deref())
            .is_some_and(|t| t.contains("queued as ABC123"))
    );
    assert!(!format!("{traces:?}").contains(CANARY));
}
