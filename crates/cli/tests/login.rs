//! `registre login` end to end, against the test OIDC issuer of
//! registre-access (a Pro Santé Connect stand-in): CIBA in poll mode (the
//! issuer answers `authorization_pending`, then `slow_down`, then the
//! tokens; the CLI must wait `interval`, then `interval + 5` s) and the
//! authorization code flow with PKCE on a loopback redirect (a "browser"
//! command follows the issuer's redirect to the CLI's callback). The token
//! is kept 0600 under `$XDG_STATE_HOME/registre/` and `registre search`
//! then works without `--token-file`, traced under the professional's RPPS.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../access/tests/support/issuer.rs"]
mod issuer;

use std::ffi::OsStr;
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Server, free_port};
use issuer::{AUDIENCE, IssuerOptions, ROLE_CLAIM, RPPS, TestIssuer};
use serde_json::Value;

const CLIENT_ID: &str = "registre-cli";

struct Setup {
    _dir: tempfile::TempDir,
    /// `XDG_STATE_HOME` of the CLI.
    state: PathBuf,
    server: Server,
}

/// A server that accepts `issuer`'s tokens (`psc`, wallet discovery,
/// eidas1, role from `registre_role`), and an empty state directory.
fn setup(issuer: &TestIssuer) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("registre.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[access.oidc]]
name = "psc"
issuer = "{}"
discovery = "wallet"
audience = ["{AUDIENCE}"]
required_acr = "eidas1"
role_rules = [{{ claim = "{ROLE_CLAIM}", value = "auditeur", role = "auditeur" }}]
"#,
            issuer.issuer()
        ),
    )
    .expect("write the configuration");
    let server = Server::start_with(
        &dir.path().join("data"),
        free_port(),
        &[OsStr::new("--config"), config.as_os_str()],
    );
    Setup {
        state: dir.path().join("state"),
        server,
        _dir: dir,
    }
}

fn registre(state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_registre"));
    c.env("REGISTRE_LOG", "warn")
        .env("XDG_STATE_HOME", state)
        .env_remove("REGISTRE_TOKEN")
        .env_remove("REGISTRE_TOKEN_FILE")
        .env_remove("REGISTRE_SERVER")
        .env_remove("REGISTRE_OIDC_ISSUER")
        .env_remove("REGISTRE_OIDC_CLIENT_ID")
        .env_remove("REGISTRE_OIDC_CLIENT_SECRET");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Waits for `child`, killing it after `limit`.
fn wait(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().expect("output");
            panic!(
                "registre did not finish within {limit:?}; stderr:\n{}",
                text(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The saved token: mode 0600, for `issuer`, a JWT of `subject`.
fn check_saved_token(state: &Path, issuer: &TestIssuer, subject: &str) -> String {
    let path = state.join("registre/token.json");
    let meta = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("no token file {}: {e}", path.display()));
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "{} is readable by others",
        path.display()
    );
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("token.json is JSON");
    assert_eq!(saved["issuer"], issuer.issuer(), "{saved}");
    let expires: jiff::Timestamp = saved["expires_at"]
        .as_str()
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("no expires_at in {saved}"));
    assert!(expires > jiff::Timestamp::now(), "{saved}");
    let access = saved["access_token"].as_str().expect("access_token");
    let payload = access.split('.').nth(1).expect("a JWS");
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .expect("base64url"),
    )
    .expect("JSON claims");
    assert_eq!(claims["SubjectNameID"], subject, "{claims}");
    assert_eq!(claims["iss"], issuer.issuer(), "{claims}");
    access.to_owned()
}

/// `registre search` without `--token-file` or `REGISTRE_TOKEN`: the saved
/// login token is used; the search is traced under `subject` (auth psc).
async fn search_with_saved_token(s: &Setup, subject: &str) {
    let o = registre(&s.state)
        .args(["search", "--server", &s.server.url, "--actor", "nobody-x"])
        .output()
        .expect("registre search");
    assert!(
        o.status.success(),
        "search with the saved token: {}",
        text(&o.stderr)
    );
    assert!(text(&o.stderr).contains("0 traces"), "{}", text(&o.stderr));
    let v: Value = reqwest::Client::new()
        .get(format!(
            "{}/v1/traces?class=applicative&actor={subject}",
            s.server.url
        ))
        .bearer_auth(&s.server.token)
        .send()
        .await
        .expect("admin search")
        .json()
        .await
        .expect("JSON");
    let traces = v["traces"].as_array().cloned().unwrap_or_default();
    assert!(
        traces.iter().any(|t| t["actor"]["auth"] == "psc"
            && t["action"] == "recherche"
            && t["request"]
                .as_str()
                .is_some_and(|r| r.starts_with("/v1/traces?actor=nobody-x"))),
        "{traces:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ciba_login_honours_slow_down_and_its_token_serves_search() {
    // pending, pending, slow_down, tokens; interval 1 s.
    let issuer = TestIssuer::start_with(IssuerOptions {
        ciba_pending_polls: 2,
        ciba_interval_secs: 1,
        ..IssuerOptions::default()
    })
    .await;
    let s = setup(&issuer);
    // A different professional than the issuer's default subject.
    let subject = "810009876543";

    let start = Instant::now();
    let child = registre(&s.state)
        .args([
            "login",
            "--ciba",
            "--issuer",
            issuer.issuer(),
            "--discovery",
            "wallet",
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            "s3cret",
            "--login-hint",
            subject,
            "--timeout",
            "60",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn registre login");
    // When each poll of the token endpoint arrives.
    let mut polls: Vec<Duration> = Vec::new();
    let mut child = Some(child);
    let output = loop {
        let seen = issuer.hits("/token");
        while polls.len() < seen {
            polls.push(start.elapsed());
        }
        let c = child.as_mut().expect("child");
        if c.try_wait().expect("try_wait").is_some() {
            break child
                .take()
                .expect("child")
                .wait_with_output()
                .expect("output");
        }
        if start.elapsed() > Duration::from_secs(40) {
            let _ = c.kill();
            let o = child
                .take()
                .expect("child")
                .wait_with_output()
                .expect("output");
            panic!(
                "CIBA login did not finish; polls at {polls:?}; stderr:\n{}",
                text(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        output.status.success(),
        "registre login --ciba: {}",
        text(&output.stderr)
    );
    assert_eq!(issuer.hits("/bc-authorize"), 1);
    assert_eq!(
        polls.len(),
        4,
        "pending, pending, slow_down, tokens: polls at {polls:?}"
    );
    let gaps: Vec<Duration> = polls.windows(2).map(|w| w[1] - w[0]).collect();
    // The interval is kept between polls…
    assert!(
        polls[0] >= Duration::from_millis(900),
        "first poll before the interval: {polls:?}"
    );
    for g in &gaps[..2] {
        assert!(
            *g >= Duration::from_millis(900) && *g < Duration::from_millis(4500),
            "polls at {polls:?}"
        );
    }
    // …and after slow_down it grows by 5 s (RFC 8628 §3.5, CIBA §11).
    assert!(
        gaps[2] >= Duration::from_millis(5800),
        "slow_down not honoured: polls at {polls:?}"
    );
    assert!(text(&output.stderr).contains("signed in"));

    check_saved_token(&s.state, &issuer, subject);
    search_with_saved_token(&s, subject).await;
}

/// How the "browser" opens the issuer's login URL.
#[derive(Clone, Copy, Debug)]
enum Browser {
    /// `curl -s -L -o /dev/null URL`: follows the redirect to the CLI's
    /// loopback callback.
    Curl,
    /// No browser (`--browser true`): the test reads the URL the CLI
    /// prints and follows it itself.
    Printed,
}

/// Starts `registre login` (code flow) with `browser` as the browser
/// command; stderr piped.
fn spawn_code_login(state: &Path, issuer: &TestIssuer, browser: &str) -> Child {
    registre(state)
        .args([
            "login",
            "--issuer",
            issuer.issuer(),
            "--client-id",
            CLIENT_ID,
            "--timeout",
            "30",
            "--browser",
            browser,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn registre login")
}

/// What `printed_url` read: the login URL, its `redirect_uri`, and the
/// CLI's stderr (the rest of it is read by a thread, so the CLI never
/// blocks on a full pipe).
struct Printed {
    url: String,
    redirect: String,
    stderr: std::thread::JoinHandle<String>,
}

/// Reads the login URL the CLI prints ("open this address to sign in:\n
/// URL") and checks its parameters.
fn printed_url(child: &mut Child, issuer: &TestIssuer) -> Printed {
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    let url = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("registre login printed no URL:\n{seen}"))
            .expect("read stderr");
        seen.push_str(&line);
        seen.push('\n');
        let line = line.trim();
        if line.starts_with(&issuer.endpoint("/authorize")) {
            break line.to_owned();
        }
    };
    let stderr = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    let query: Vec<(String, String)> = reqwest::Url::parse(&url)
        .expect("a URL")
        .query_pairs()
        .into_owned()
        .collect();
    let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(param("response_type"), Some("code"), "{url}");
    assert_eq!(param("client_id"), Some(CLIENT_ID), "{url}");
    assert_eq!(param("code_challenge_method"), Some("S256"), "{url}");
    assert!(
        param("code_challenge").is_some_and(|c| c.len() == 43),
        "{url}"
    );
    assert_eq!(param("acr_values"), Some("eidas1"), "{url}");
    let redirect = param("redirect_uri").unwrap_or_default().to_owned();
    assert!(
        redirect.starts_with("http://127.0.0.1:") && redirect.ends_with("/callback"),
        "{url}"
    );
    assert!(param("state").is_some_and(|s| s.len() >= 16), "{url}");
    Printed {
        url,
        redirect,
        stderr,
    }
}

/// The code flow with the "browser" played by the test: follow the URL the
/// CLI prints to the issuer, which redirects to the CLI's callback.
async fn printed_code_login(state: &Path, issuer: &TestIssuer) -> (Output, String) {
    let mut child = spawn_code_login(state, issuer, "true");
    let printed = printed_url(&mut child, issuer);
    let r = reqwest::get(&printed.url)
        .await
        .expect("follow the login URL");
    assert_eq!(r.status(), 200, "the CLI's callback answer");
    let page = r.text().await.expect("page");
    assert!(page.contains("close this window"), "{page}");
    let o = wait(child, Duration::from_secs(30));
    let seen = printed.stderr.join().expect("stderr reader");
    (o, seen)
}

async fn code_flow(browser: Browser) {
    let issuer = TestIssuer::start().await;
    let s = setup(&issuer);
    let (o, stderr_text) = match browser {
        Browser::Curl => {
            let child = spawn_code_login(&s.state, &issuer, "curl -s -L -o /dev/null");
            let o = wait(child, Duration::from_secs(30));
            let e = text(&o.stderr);
            (o, e)
        }
        Browser::Printed => printed_code_login(&s.state, &issuer).await,
    };
    assert!(
        o.status.success(),
        "registre login ({browser:?}): {stderr_text}"
    );
    assert_eq!(issuer.hits("/authorize"), 1, "{stderr_text}");
    assert_eq!(issuer.hits("/token"), 1, "{stderr_text}");
    check_saved_token(&s.state, &issuer, RPPS);
    search_with_saved_token(&s, RPPS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_flow_login_with_curl_as_the_browser() {
    let curl = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !curl {
        eprintln!("curl is not installed: the login URL is followed by the test instead");
    }
    code_flow(if curl {
        Browser::Curl
    } else {
        Browser::Printed
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_flow_login_with_the_printed_url() {
    code_flow(Browser::Printed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_saved_token_is_not_used() {
    let issuer = TestIssuer::start().await;
    let s = setup(&issuer);
    let dir = s.state.join("registre");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let jwt = issuer.issue(&issuer.claims(), "rsa-1", "RS256");
    std::fs::write(
        dir.join("token.json"),
        serde_json::json!({
            "issuer": issuer.issuer(),
            "access_token": jwt,
            "expires_at": "2020-01-01T00:00:00Z",
        })
        .to_string(),
    )
    .expect("write");
    // Run from an empty directory: no ./registre-data/admin-token either.
    let o = registre(&s.state)
        .current_dir(&s.state)
        .args(["search", "--server", &s.server.url])
        .output()
        .expect("registre search");
    assert!(!o.status.success(), "an expired saved token was used");
    assert!(
        text(&o.stderr).contains("token"),
        "the error should say a token is missing: {}",
        text(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_without_our_state_is_refused() {
    let issuer = TestIssuer::start().await;
    let s = setup(&issuer);
    let mut child = spawn_code_login(&s.state, &issuer, "true");
    let printed = printed_url(&mut child, &issuer);
    // Another page (or process) calls the loopback callback first, with a
    // code of its own: a login CSRF.
    let r = reqwest::get(format!(
        "{}?code=attacker-code&state=forged",
        printed.redirect
    ))
    .await
    .expect("forged callback");
    let _ = r.text().await;
    let o = wait(child, Duration::from_secs(30));
    let stderr_text = printed.stderr.join().expect("stderr reader");
    assert!(!o.status.success(), "a foreign state was accepted");
    assert!(stderr_text.contains("state"), "{stderr_text}");
    assert_eq!(issuer.hits("/token"), 0, "the forged code was exchanged");
    assert!(
        !s.state.join("registre/token.json").exists(),
        "a token was saved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_left_readable_is_made_private_again() {
    let issuer = TestIssuer::start().await;
    let s = setup(&issuer);
    let dir = s.state.join("registre");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("token.json");
    std::fs::write(&path, "{}").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (o, stderr_text) = printed_code_login(&s.state, &issuer).await;
    assert!(o.status.success(), "registre login: {stderr_text}");
    check_saved_token(&s.state, &issuer, RPPS);
}
