//! The load generator's IMAP client: minimal and cheap. One tagged command
//! at a time, read until its tagged completion; literals in responses (FETCH
//! data) are skipped by count, never scanned or kept; APPEND waits for the
//! server's `+` before sending its literal (a synchronising literal).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A tagged completion.
pub struct Reply {
    /// `OK` (not `NO` or `BAD`).
    pub ok: bool,
    /// The tagged line after the tag, e.g. `OK [APPENDUID 17 42] Append completed.`
    pub text: String,
    /// The first physical line of each untagged response, when asked for.
    pub untagged: Vec<String>,
}

impl Reply {
    /// The UID of an `[APPENDUID <validity> <uid>]` code (RFC 4315).
    pub fn append_uid(&self) -> Option<u32> {
        let rest = self.text.split_once("[APPENDUID ")?.1;
        let mut words = rest.split([' ', ']']);
        words.next()?;
        words.next()?.parse().ok()
    }
}

pub struct Imap<S> {
    stream: S,
    /// Unread bytes are `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    tags: u32,
    out: Vec<u8>,
}

/// What ended a read.
enum Ended {
    Continuation,
    Tagged(Reply),
}

const READ: usize = 64 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Imap<S> {
    /// Reads the server's greeting.
    pub async fn new(stream: S) -> io::Result<Self> {
        let mut c = Imap {
            stream,
            buf: Vec::with_capacity(READ),
            pos: 0,
            tags: 0,
            out: Vec::with_capacity(1024),
        };
        let (s, e) = c.line().await?;
        if !c.buf[s..e].starts_with(b"* OK") {
            return Err(io::Error::other(format!(
                "greeting: {}",
                String::from_utf8_lossy(&c.buf[s..e])
            )));
        }
        Ok(c)
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= READ {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(READ);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// The next physical line, CRLF excluded, as a range of `buf`.
    async fn line(&mut self) -> io::Result<(usize, usize)> {
        let mut scanned = self.pos;
        loop {
            if let Some(i) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let start = self.pos;
                let nl = scanned + i;
                self.pos = nl + 1;
                let end = if nl > start && self.buf[nl - 1] == b'\r' {
                    nl - 1
                } else {
                    nl
                };
                return Ok((start, end));
            }
            let offset = scanned - self.pos;
            self.fill().await?;
            scanned = self.pos + offset;
        }
    }

    /// Skips `n` bytes (a literal).
    async fn skip(&mut self, mut n: usize) -> io::Result<()> {
        loop {
            let have = self.buf.len() - self.pos;
            if have >= n {
                self.pos += n;
                return Ok(());
            }
            n -= have;
            self.pos = self.buf.len();
            self.fill().await?;
        }
    }

    async fn read_until_tagged(
        &mut self,
        tag: &[u8],
        collect: bool,
        continuation: bool,
    ) -> io::Result<Ended> {
        let mut untagged = Vec::new();
        let mut line_start = true;
        loop {
            let (s, e) = self.line().await?;
            let line = &self.buf[s..e];
            if line_start {
                if continuation && line.first() == Some(&b'+') {
                    return Ok(Ended::Continuation);
                }
                if line.len() > tag.len() && line.starts_with(tag) && line[tag.len()] == b' ' {
                    let text = String::from_utf8_lossy(&line[tag.len() + 1..]).into_owned();
                    return Ok(Ended::Tagged(Reply {
                        ok: text.starts_with("OK"),
                        text,
                        untagged,
                    }));
                }
                if collect {
                    untagged.push(String::from_utf8_lossy(line).into_owned());
                }
            }
            match literal_len(line) {
                Some(n) => {
                    self.skip(n).await?;
                    line_start = false;
                }
                None => line_start = true,
            }
        }
    }

    fn next_tag(&mut self) -> Vec<u8> {
        self.tags += 1;
        format!("b{}", self.tags).into_bytes()
    }

    /// Sends `command` (without tag and CRLF) and reads to its completion.
    pub async fn command(&mut self, command: &str, collect: bool) -> io::Result<Reply> {
        let tag = self.next_tag();
        self.out.clear();
        self.out.extend_from_slice(&tag);
        self.out.push(b' ');
        self.out.extend_from_slice(command.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.stream.write_all(&self.out).await?;
        self.stream.flush().await?;
        match self.read_until_tagged(&tag, collect, false).await? {
            Ended::Tagged(r) => Ok(r),
            Ended::Continuation => unreachable!("not asked for"),
        }
    }

    /// `APPEND <mailbox> {n}`, waits for `+`, sends the message.
    pub async fn append(&mut self, mailbox: &str, message: &[u8]) -> io::Result<Reply> {
        let tag = self.next_tag();
        self.out.clear();
        self.out.extend_from_slice(&tag);
        self.out
            .extend_from_slice(format!(" APPEND {mailbox} {{{}}}\r\n", message.len()).as_bytes());
        self.stream.write_all(&self.out).await?;
        self.stream.flush().await?;
        if let Ended::Tagged(r) = self.read_until_tagged(&tag, false, true).await? {
            return Ok(r);
        }
        self.stream.write_all(message).await?;
        self.stream.write_all(b"\r\n").await?;
        self.stream.flush().await?;
        match self.read_until_tagged(&tag, false, false).await? {
            Ended::Tagged(r) => Ok(r),
            Ended::Continuation => unreachable!("not asked for"),
        }
    }

    /// Sends LOGOUT and closes (errors ignored).
    pub async fn logout(mut self) {
        let _ = self.command("LOGOUT", false).await;
        let _ = self.stream.shutdown().await;
    }
}

/// The length of the literal a physical line ends with (`{n}` or `~{n}`).
fn literal_len(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = body[open + 1..]
        .strip_suffix(b"+")
        .unwrap_or(&body[open + 1..]);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_lengths() {
        assert_eq!(literal_len(b"* 1 FETCH (UID 7 BODY[] {12}"), Some(12));
        assert_eq!(literal_len(b"* 1 FETCH (BINARY[] ~{3}"), Some(3));
        assert_eq!(literal_len(b"* OK {x}"), None);
        assert_eq!(literal_len(b"* OK done"), None);
    }

    #[tokio::test]
    async fn reads_to_the_tagged_line_skipping_literals() {
        let (client, mut server) = tokio::io::duplex(7);
        let task = tokio::spawn(async move {
            server.write_all(b"* OK ready\r\n").await.expect("greeting");
            let mut got = vec![0u8; 30];
            server.read_exact(&mut got).await.expect("read");
            assert_eq!(&got, b"b1 UID FETCH 7 (BODY.PEEK[])\r\n");
            server
                .write_all(
                    b"* 1 FETCH (UID 7 BODY[] {16}\r\nb1 OK fake\r\n\r\nxy)\r\nb1 OK Fetch completed.\r\n",
                )
                .await
                .expect("write");
            let mut got = vec![0u8; 21];
            server.read_exact(&mut got).await.expect("read");
            assert_eq!(&got, b"b2 APPEND INBOX {3}\r\n");
            server.write_all(b"+ OK\r\n").await.expect("write");
            let mut body = vec![0u8; 5];
            server.read_exact(&mut body).await.expect("read");
            assert_eq!(&body, b"abc\r\n");
            server
                .write_all(b"b2 OK [APPENDUID 99 42] Append completed.\r\n")
                .await
                .expect("write");
        });
        let mut c = Imap::new(client).await.expect("greeting");
        let r = c
            .command("UID FETCH 7 (BODY.PEEK[])", true)
            .await
            .expect("fetch");
        assert!(r.ok);
        assert_eq!(r.text, "OK Fetch completed.");
        assert_eq!(r.untagged, ["* 1 FETCH (UID 7 BODY[] {16}"]);
        let r = c.append("INBOX", b"abc").await.expect("append");
        assert_eq!(r.append_uid(), Some(42));
        task.await.expect("server");
    }
}
