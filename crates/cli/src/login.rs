//! `registre login`: an auditor obtains an OIDC token from a Pro Santé
//! Connect-like issuer, as Ségur asks of heavy clients (SC.PSC.01/13):
//! authorization code flow with PKCE on a loopback redirect (RFC 8252), or
//! CIBA in poll mode. The token is kept in the user's state dir (0600) and
//! used by `search`, `export` and the other client commands.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Args;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::CliError;

const LOGIN_HELP: &str = "\
Examples:
  registre login --issuer https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet \\
                 --discovery wallet --client-id mon-logiciel
      Opens the browser on the issuer's login page (Pro Santé Connect: e-CPS or
      CPS card); the answer comes back to a loopback address (RFC 8252).
  registre login --issuer … --client-id … --client-secret … --ciba --login-hint 810001234567
      CIBA: the professional approves on their phone (e-CPS); registre polls.

The token is kept in ~/.local/state/registre/token.json (mode 0600) and used by
search, export and verify --server until it expires.";

/// Sign in with an OIDC issuer (Pro Santé Connect) and keep the token.
#[derive(Args)]
#[command(after_help = LOGIN_HELP)]
pub struct LoginArgs {
    /// Issuer URL.
    #[arg(long, env = "REGISTRE_OIDC_ISSUER")]
    issuer: String,
    /// `wallet` (Pro Santé Connect's /.well-known/wallet-openid-configuration)
    /// or `standard` (/.well-known/openid-configuration).
    #[arg(long, default_value = "standard")]
    discovery: String,
    #[arg(long, env = "REGISTRE_OIDC_CLIENT_ID")]
    client_id: String,
    #[arg(long, env = "REGISTRE_OIDC_CLIENT_SECRET")]
    client_secret: Option<String>,
    #[arg(long, default_value = "openid")]
    scope: String,
    /// Required authentication level.
    #[arg(long, default_value = "eidas1")]
    acr: String,
    /// Use CIBA (decoupled: approve on a phone) instead of the browser.
    #[arg(long)]
    ciba: bool,
    /// CIBA: the professional's identifier (RPPS…).
    #[arg(long, required_if_eq("ciba", "true"))]
    login_hint: Option<String>,
    /// CIBA: the text shown on the professional's device.
    #[arg(long, default_value = "registre: connexion au journal de traces")]
    binding_message: String,
    /// Command that opens the login URL (default: xdg-open; the URL is
    /// always printed too).
    #[arg(long, default_value = "xdg-open")]
    browser: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

pub async fn run(a: LoginArgs) -> Result<(), CliError> {
    let client = crate::client::http_client()?;
    let base = a.issuer.trim_end_matches('/');
    let well_known = if a.discovery == "wallet" {
        "wallet-openid-configuration"
    } else {
        "openid-configuration"
    };
    let disco_url = format!("{base}/.well-known/{well_known}");
    let disco: Value = client
        .get(&disco_url)
        .send()
        .await
        .map_err(|e| CliError::with(format!("cannot reach {disco_url}"), &e))?
        .json()
        .await
        .map_err(|e| CliError::with(format!("{disco_url} is not a discovery document"), &e))?;
    let token_endpoint = disco["token_endpoint"]
        .as_str()
        .ok_or_else(|| CliError::new("the issuer announces no token_endpoint"))?
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let token = if a.ciba {
        ciba(&a, &client, &disco, &token_endpoint, deadline).await?
    } else {
        code_flow(&a, &client, &disco, &token_endpoint, deadline).await?
    };
    let access = token["access_token"]
        .as_str()
        .ok_or_else(|| CliError::new("the token endpoint returned no access_token"))?;
    let expires_in = token["expires_in"].as_u64().unwrap_or(300);
    let saved = serde_json::json!({
        "issuer": a.issuer,
        "access_token": access,
        "expires_at": (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(expires_in as i64)).to_string(),
    });
    let path = token_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::with(format!("cannot create {}", dir.display()), &e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| CliError::with(format!("cannot write {}", path.display()), &e))?;
    // `mode` applies on creation only: tighten a file left readable.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| CliError::with(format!("cannot protect {}", path.display()), &e))?;
    f.write_all(saved.to_string().as_bytes())
        .map_err(|e| CliError::with(format!("cannot write {}", path.display()), &e))?;
    eprintln!(
        "signed in; token kept in {} until {}",
        path.display(),
        saved["expires_at"].as_str().unwrap_or_default()
    );
    Ok(())
}

/// Where the login token is kept.
pub fn token_path() -> PathBuf {
    crate::user_state_dir().join("token.json")
}

/// The kept token, if it has not expired.
pub fn saved_token() -> Option<String> {
    let v: Value = serde_json::from_slice(&std::fs::read(token_path()).ok()?).ok()?;
    let exp: jiff::Timestamp = v["expires_at"].as_str()?.parse().ok()?;
    (exp > jiff::Timestamp::now()).then(|| v["access_token"].as_str().map(str::to_owned))?
}

async fn code_flow(
    a: &LoginArgs,
    client: &reqwest::Client,
    disco: &Value,
    token_endpoint: &str,
    deadline: Instant,
) -> Result<Value, CliError> {
    let authorize = disco["authorization_endpoint"]
        .as_str()
        .ok_or_else(|| CliError::new("the issuer announces no authorization_endpoint"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::with("cannot listen on a loopback port", &e))?;
    let port = listener
        .local_addr()
        .map_err(|e| CliError::with("cannot read the loopback port", &e))?
        .port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let verifier = random_b64(32)?;
    let challenge = {
        use sha2::Digest;
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    let state = random_b64(16)?;
    let mut url = reqwest::Url::parse(authorize)
        .map_err(|e| CliError::with("the authorization endpoint is not a URL", &e))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &a.client_id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", &a.scope)
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("acr_values", &a.acr);
    eprintln!("open this address to sign in:\n  {url}");
    let mut parts = a.browser.split_whitespace();
    if let Some(cmd) = parts.next() {
        let _ = std::process::Command::new(cmd)
            .args(parts)
            .arg(url.as_str())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    // Wait for the browser to come back to the loopback address.
    let (code, got_state) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (mut sock, _) = tokio::time::timeout(left, listener.accept())
            .await
            .map_err(|_| CliError::new("timed out waiting for the sign-in to complete"))?
            .map_err(|e| CliError::with("loopback accept failed", &e))?;
        let mut buf = vec![0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        let target = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("")
            .to_owned();
        let Some(query) = target.strip_prefix("/callback?") else {
            let _ = sock
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await;
            continue;
        };
        let mut code = None;
        let mut st = None;
        let mut error = None;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "code" => code = Some(v.into_owned()),
                "state" => st = Some(v.into_owned()),
                "error" => error = Some(v.into_owned()),
                _ => {}
            }
        }
        let page = "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n\r\nregistre: you can close this window.\n";
        let _ = sock.write_all(page.as_bytes()).await;
        if let Some(e) = error {
            return Err(CliError::new(format!(
                "the issuer refused the sign-in: {e}"
            )));
        }
        if let Some(c) = code {
            break (c, st);
        }
    };
    if got_state.as_deref() != Some(state.as_str()) {
        return Err(CliError::new(
            "the sign-in answer does not carry our state: refused (possible cross-site forgery)",
        ));
    }
    let mut form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code),
        ("redirect_uri", redirect),
        ("client_id", a.client_id.clone()),
        ("code_verifier", verifier),
    ];
    if let Some(s) = &a.client_secret {
        form.push(("client_secret", s.clone()));
    }
    token_request(client, token_endpoint, &form).await
}

async fn ciba(
    a: &LoginArgs,
    client: &reqwest::Client,
    disco: &Value,
    token_endpoint: &str,
    deadline: Instant,
) -> Result<Value, CliError> {
    let bc = disco["backchannel_authentication_endpoint"]
        .as_str()
        .ok_or_else(|| {
            CliError::new(
                "the issuer announces no CIBA endpoint (backchannel_authentication_endpoint)",
            )
        })?;
    let mut form = vec![
        ("scope", a.scope.clone()),
        ("client_id", a.client_id.clone()),
        ("login_hint", a.login_hint.clone().unwrap_or_default()),
        ("binding_message", a.binding_message.clone()),
        ("acr_values", a.acr.clone()),
    ];
    if let Some(s) = &a.client_secret {
        form.push(("client_secret", s.clone()));
    }
    let r = client
        .post(bc)
        .form(&form)
        .send()
        .await
        .map_err(|e| CliError::with(format!("cannot reach {bc}"), &e))?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(CliError::new(format!(
            "the issuer refused the CIBA request ({status}): {}",
            v["error_description"]
                .as_str()
                .or(v["error"].as_str())
                .unwrap_or("no reason given")
        )));
    }
    let auth_req_id = v["auth_req_id"]
        .as_str()
        .ok_or_else(|| CliError::new("the CIBA answer has no auth_req_id"))?
        .to_owned();
    let mut interval = v["interval"].as_u64().unwrap_or(5).max(1);
    eprintln!(
        "approve the request \"{}\" on your device…",
        a.binding_message
    );
    loop {
        if Instant::now() >= deadline {
            return Err(CliError::new("timed out waiting for the CIBA approval"));
        }
        tokio::time::sleep(Duration::from_secs(interval)).await;
        let mut poll = vec![
            ("grant_type", "urn:openid:params:grant-type:ciba".to_owned()),
            ("auth_req_id", auth_req_id.clone()),
            ("client_id", a.client_id.clone()),
        ];
        if let Some(s) = &a.client_secret {
            poll.push(("client_secret", s.clone()));
        }
        let r = client
            .post(token_endpoint)
            .form(&poll)
            .send()
            .await
            .map_err(|e| CliError::with(format!("cannot reach {token_endpoint}"), &e))?;
        let ok = r.status().is_success();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if ok {
            return Ok(v);
        }
        match v["error"].as_str() {
            Some("authorization_pending") => {}
            Some("slow_down") => interval += 5,
            Some(e) => {
                return Err(CliError::new(format!(
                    "the CIBA request ended: {e}{}",
                    v["error_description"]
                        .as_str()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                )));
            }
            None => {
                return Err(CliError::new(
                    "the token endpoint answered an unreadable error",
                ));
            }
        }
    }
}

async fn token_request(
    client: &reqwest::Client,
    endpoint: &str,
    form: &[(&str, String)],
) -> Result<Value, CliError> {
    let r = client
        .post(endpoint)
        .form(form)
        .send()
        .await
        .map_err(|e| CliError::with(format!("cannot reach {endpoint}"), &e))?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(CliError::new(format!(
            "the token endpoint refused ({status}): {}",
            v["error_description"]
                .as_str()
                .or(v["error"].as_str())
                .unwrap_or("no reason given")
        )));
    }
    Ok(v)
}

fn random_b64(n: usize) -> Result<String, CliError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| CliError::new(format!("no randomness: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}
