//! Test harness: runs the real `registre` binary on a free loopback port.

#![allow(dead_code)]
// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub url: String,
    pub data: PathBuf,
    pub token: String,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    /// Starts `registre serve` on `data` and waits until it answers.
    pub fn start(data: &Path, port: u16) -> Server {
        Server::start_with(data, port, &[])
    }

    /// Like `start`, with extra arguments to `registre serve` (e.g.
    /// `--config FILE`).
    pub fn start_with(data: &Path, port: u16, extra: &[&std::ffi::OsStr]) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_registre"))
            .args(["serve", "--data"])
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("REGISTRE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn registre serve");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // The token file is created, then written: wait for the whole
            // line, not just the file.
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && std::fs::read_to_string(data.join("admin-token"))
                    .is_ok_and(|t| t.ends_with('\n') && !t.trim().is_empty())
            {
                break;
            }
            assert!(Instant::now() < deadline, "registre serve did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        let token = std::fs::read_to_string(data.join("admin-token"))
            .expect("admin token")
            .trim()
            .to_owned();
        Server {
            child,
            url,
            data: data.to_owned(),
            token,
        }
    }

    pub fn kill9(&mut self) {
        // SIGKILL: no chance to flush anything.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn trace_json(actor: &str, tag: &str, class: &str) -> String {
    format!(
        r#"{{"class":"{class}","occurred_at":"2026-11-28T15:42:07.123+01:00","actor":{{"id":"{actor}","id_type":"rpps"}},"action":"consultation","target":{{"mailbox":"box@hopital.mssante.fr","folder":"INBOX","uids":"{tag}"}},"request":"UID FETCH {tag} BODY.PEEK[]","response":{{"status":"OK","text":"Fetch completed"}},"outcome":"success"}}"#
    )
}
