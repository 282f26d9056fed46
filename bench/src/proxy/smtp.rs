//! The load generator's submission client: one command at a time, replies
//! read whole (multi-line `250-…` up to `250 …`), AUTH PLAIN once, then
//! sends of `MAIL FROM`, `RCPT TO`, `DATA`, the message and `.`.

use std::io;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub struct Smtp<S> {
    stream: S,
    buf: Vec<u8>,
    pos: usize,
}

/// A reply: its code and its last line.
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Smtp<S> {
    /// Reads the greeting (220).
    pub async fn new(stream: S) -> io::Result<Self> {
        let mut c = Smtp {
            stream,
            buf: Vec::with_capacity(4096),
            pos: 0,
        };
        let r = c.reply().await?;
        if r.code != 220 {
            return Err(io::Error::other(format!("greeting: {}", r.text)));
        }
        Ok(c)
    }

    async fn line(&mut self) -> io::Result<String> {
        let mut scanned = self.pos;
        loop {
            if let Some(i) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&self.buf[self.pos..scanned + i])
                    .trim_end_matches('\r')
                    .to_owned();
                self.pos = scanned + i + 1;
                return Ok(line);
            }
            scanned = self.buf.len();
            if self.pos == self.buf.len() {
                self.buf.clear();
                scanned = 0;
                self.pos = 0;
            }
            self.buf.reserve(4096);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    async fn reply(&mut self) -> io::Result<Reply> {
        loop {
            let line = self.line().await?;
            let code = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| io::Error::other(format!("not a reply: {line}")))?;
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(Reply { code, text: line });
            }
        }
    }

    /// Sends one command line and reads its reply.
    pub async fn command(&mut self, line: &str) -> io::Result<Reply> {
        let mut out = Vec::with_capacity(line.len() + 2);
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        self.reply().await
    }

    /// `EHLO`, then `AUTH PLAIN` with an initial response.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), String> {
        let r = self
            .command("EHLO bench.hopital.test")
            .await
            .map_err(|e| format!("EHLO: {e}"))?;
        if r.code != 250 {
            return Err(format!("EHLO: {}", r.text));
        }
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{user}\0{password}").as_bytes());
        let r = self
            .command(&format!("AUTH PLAIN {token}"))
            .await
            .map_err(|e| format!("AUTH: {e}"))?;
        if r.code != 235 {
            return Err(format!("AUTH PLAIN {user}: {}", r.text));
        }
        Ok(())
    }

    /// One message from `from` to `to`; `message` ends with CRLF and has no
    /// line starting with a dot.
    pub async fn send(&mut self, from: &str, to: &str, message: &[u8]) -> Result<(), String> {
        let expect = |r: io::Result<Reply>, code: u16, what: &str| match r {
            Ok(r) if r.code == code => Ok(()),
            Ok(r) => Err(format!("{what}: {}", r.text)),
            Err(e) => Err(format!("{what}: {e}")),
        };
        expect(
            self.command(&format!("MAIL FROM:<{from}>")).await,
            250,
            "MAIL FROM",
        )?;
        expect(
            self.command(&format!("RCPT TO:<{to}>")).await,
            250,
            "RCPT TO",
        )?;
        expect(self.command("DATA").await, 354, "DATA")?;
        let r = async {
            self.stream.write_all(message).await?;
            self.stream.write_all(b".\r\n").await?;
            self.stream.flush().await?;
            self.reply().await
        }
        .await;
        expect(r, 250, "end of data")
    }

    /// QUIT, errors ignored.
    pub async fn quit(mut self) {
        let _ = self.command("QUIT").await;
        let _ = self.stream.shutdown().await;
    }
}
