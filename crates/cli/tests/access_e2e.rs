//! Access control end to end, against the real `registre` binary: a
//! Pro Santé Connect-like issuer (the test issuer of registre-access) is
//! configured as `[[access.oidc]]`; an API key made with `registre keys
//! create` writes only its own traces and cannot read; an auditor's PSC
//! token searches and exports (the bundle verifies), and each of those
//! accesses is itself an applicative trace under the auditor's RPPS; forged
//! or out-of-bounds tokens get 401 with the reason; `keys list` never shows
//! a secret, `keys revoke` takes effect at once, and creating an admin key
//! raises the alert counter.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../access/tests/support/issuer.rs"]
mod issuer;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output};

use common::{Server, free_port, trace_json};
use issuer::{AUDIENCE, ROLE_CLAIM, RPPS, TestIssuer, now, tamper};
use serde_json::{Value, json};

/// The producer key's holder (its actor id).
const PRODUCER: &str = "dpi-server";
const REASON: &str = "requisition-2026-118";

/// A temporary data directory and configuration for one server.
struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    config: PathBuf,
}

/// `[[access.oidc]]` for `issuer` (named `psc`, wallet discovery, eidas1,
/// role from `registre_role`), or no OIDC issuer at all.
fn setup(issuer: Option<&TestIssuer>) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_owned();
    let config = root.join("registre.toml");
    let mut toml = String::new();
    if let Some(i) = issuer {
        toml.push_str(&format!(
            r#"[[access.oidc]]
name = "psc"
issuer = "{}"
discovery = "wallet"
audience = ["{AUDIENCE}"]
required_acr = "eidas1"
actor_claims = ["SubjectNameID", "sub"]
role_rules = [{{ claim = "{ROLE_CLAIM}", value = "auditeur", role = "auditeur" }}]
"#,
            i.issuer()
        ));
    }
    std::fs::write(&config, toml).expect("write the configuration");
    Setup {
        data: root.join("data"),
        root,
        config,
        _dir: dir,
    }
}

fn serve(s: &Setup) -> Server {
    Server::start_with(
        &s.data,
        free_port(),
        &[OsStr::new("--config"), s.config.as_os_str()],
    )
}

/// Runs the binary as a client of `server`; `token`: REGISTRE_TOKEN (else
/// the arguments name a token file).
fn registre(server: &Server, token: Option<&str>, args: &[&OsStr]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_registre"));
    c.args(args)
        .env("REGISTRE_LOG", "warn")
        .env("REGISTRE_SERVER", &server.url)
        .env_remove("REGISTRE_TOKEN")
        .env_remove("REGISTRE_TOKEN_FILE")
        // No token saved by `registre login` on this machine is used.
        .env("XDG_STATE_HOME", server.data.join("no-login"));
    if let Some(t) = token {
        c.env("REGISTRE_TOKEN", t);
    }
    c.output().expect("run registre")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn admin_token_file(server: &Server) -> PathBuf {
    server.data.join("admin-token")
}

/// `registre keys create` with the bootstrap admin token; the printed
/// secret.
fn create_key(server: &Server, role: &str, name: &str) -> String {
    create_key_with(server, role, name, &[])
}

fn create_key_with(server: &Server, role: &str, name: &str, extra: &[&str]) -> String {
    let token_file = admin_token_file(server);
    let mut args: Vec<&OsStr> = vec![
        "keys".as_ref(),
        "create".as_ref(),
        "--role".as_ref(),
        role.as_ref(),
        "--name".as_ref(),
        name.as_ref(),
        "--token-file".as_ref(),
        token_file.as_os_str(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    let o = registre(server, None, &args);
    assert!(
        o.status.success(),
        "keys create {role} {name}: {}",
        text(&o.stderr)
    );
    let secret = text(&o.stdout).trim().to_owned();
    assert!(
        secret.starts_with("rgk_"),
        "keys create printed {secret:?}; stderr: {}",
        text(&o.stderr)
    );
    assert!(
        text(&o.stderr).contains(name),
        "keys create should say for whom: {}",
        text(&o.stderr)
    );
    secret
}

struct Answer {
    status: u16,
    www_authenticate: String,
    body: Value,
    raw: String,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let www_authenticate = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let raw = r.text().await.expect("body");
    Answer {
        status,
        www_authenticate,
        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
    }
}

async fn get(server: &Server, bearer: &str, path_query: &str) -> Answer {
    send(
        reqwest::Client::new()
            .get(format!("{}{path_query}", server.url))
            .bearer_auth(bearer),
    )
    .await
}

async fn post_traces(server: &Server, bearer: &str, body: String) -> Answer {
    send(
        reqwest::Client::new()
            .post(format!("{}/v1/traces", server.url))
            .bearer_auth(bearer)
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

/// Every applicative trace of `actor`, oldest first (read with the
/// bootstrap admin key).
async fn applicative_traces_of(server: &Server, actor: &str) -> Vec<Value> {
    let a = get(
        server,
        &server.token,
        &format!("/v1/traces?class=applicative&actor={actor}&limit=1000"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.raw);
    let mut t = a.body["traces"].as_array().cloned().unwrap_or_default();
    t.reverse();
    t
}

fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}"))
}

async fn admin_alerts(server: &Server) -> u64 {
    let m = reqwest::get(format!("{}/metrics", server.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    metric(&m, "registre_admin_credentials_created_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_key_writes_its_own_traces_and_psc_auditor_searches_and_exports() {
    let issuer = TestIssuer::start().await;
    let s = setup(Some(&issuer));
    let server = serve(&s);

    // The producer key, made with the binary and the bootstrap admin token.
    let producer = create_key(&server, "producteur", PRODUCER);

    // It writes its own traces…
    let a = post_traces(&server, &producer, trace_json(PRODUCER, "1", "mss")).await;
    assert_eq!(a.status, 201, "own trace: {}", a.raw);
    // …but not another author's: nothing stored, the reason given.
    let a = post_traces(&server, &producer, trace_json("810009999999", "2", "mss")).await;
    assert_eq!(a.status, 403, "another author: {}", a.raw);
    assert_eq!(
        a.body["type"], "urn:registre:problem:actor-mismatch",
        "{}",
        a.raw
    );
    assert_eq!(a.body["errors"][0]["code"], "actor_mismatch", "{}", a.raw);
    assert!(
        a.body["detail"].as_str().unwrap_or("").contains(PRODUCER),
        "{}",
        a.raw
    );
    // A batch with one foreign trace is refused whole.
    let batch = format!(
        "[{},{}]",
        trace_json(PRODUCER, "3", "mss"),
        trace_json("810009999999", "4", "mss")
    );
    let a = post_traces(&server, &producer, batch).await;
    assert_eq!(a.status, 403, "mixed batch: {}", a.raw);
    assert_eq!(a.body["errors"][0]["trace"], 1, "{}", a.raw);
    // …and cannot read: 403 naming the role needed.
    let a = get(&server, &producer, "/v1/traces?actor=dpi-server").await;
    assert_eq!(a.status, 403, "producer search: {}", a.raw);
    assert_eq!(
        a.body["type"], "urn:registre:problem:forbidden",
        "{}",
        a.raw
    );
    let detail = a.body["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("auditeur") && detail.contains("producteur"),
        "the 403 names the role needed and the one held: {detail}"
    );
    assert!(
        !a.raw.contains(&producer),
        "the secret is echoed: {}",
        a.raw
    );

    // The auditor: a PSC token (SubjectNameID = RPPS, acr eidas1, role
    // claim auditeur) minted by the issuer.
    let jwt = issuer.issue(&issuer.claims(), "rsa-1", "RS256");
    let a = get(
        &server,
        &jwt,
        "/v1/traces?actor=dpi-server&action=consultation",
    )
    .await;
    assert_eq!(a.status, 200, "auditor search: {}", a.raw);
    let found = a.body["traces"].as_array().cloned().unwrap_or_default();
    assert_eq!(found.len(), 1, "{}", a.raw);
    assert_eq!(found[0]["actor"]["id"], PRODUCER);
    // The producer's trace says how its author was authenticated.
    assert_eq!(found[0]["actor"]["auth"], "apikey", "{}", found[0]);
    // An auditor token cannot write.
    let a = post_traces(&server, &jwt, trace_json(RPPS, "5", "mss")).await;
    assert_eq!(a.status, 403, "auditor write: {}", a.raw);

    // `registre search` with the token in REGISTRE_TOKEN.
    let o = registre(
        &server,
        Some(&jwt),
        &[
            "search".as_ref(),
            "--actor".as_ref(),
            PRODUCER.as_ref(),
            "--mailbox".as_ref(),
            "box@hopital.mssante.fr".as_ref(),
            "--format".as_ref(),
            "jsonl".as_ref(),
        ],
    );
    assert!(o.status.success(), "registre search: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout).lines().count(), 1, "{}", text(&o.stdout));

    // `registre export` with the token, then `registre verify` offline.
    let bundle = s.root.join("bundle");
    let o = registre(
        &server,
        Some(&jwt),
        &[
            "export".as_ref(),
            "--actor".as_ref(),
            PRODUCER.as_ref(),
            "--reason".as_ref(),
            REASON.as_ref(),
            "--out".as_ref(),
            bundle.as_os_str(),
            "--quiet".as_ref(),
        ],
    );
    assert!(o.status.success(), "registre export: {}", text(&o.stderr));
    // The bundle holds every trace of the producer: its mss trace and the
    // applicative trace of its refused read.
    let exported = std::fs::read_to_string(bundle.join("traces.jsonl")).expect("traces.jsonl");
    let exported: Vec<Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(exported.len(), 2, "{exported:#?}");
    assert!(exported.iter().all(|t| t["actor"]["id"] == PRODUCER));
    assert!(
        exported
            .iter()
            .any(|t| t["class"] == "mss" && t["action"] == "consultation"),
        "{exported:#?}"
    );
    let o = registre(&server, None, &["verify".as_ref(), bundle.as_os_str()]);
    assert!(
        o.status.success(),
        "registre verify of the bundle: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );

    // Every one of those accesses is an applicative trace under the RPPS,
    // authenticated by psc.
    let traced = applicative_traces_of(&server, RPPS).await;
    for t in &traced {
        assert_eq!(t["actor"]["auth"], "psc", "{t}");
        assert_eq!(t["class"], "applicative", "{t}");
    }
    let requests: Vec<&str> = traced
        .iter()
        .map(|t| t["request"].as_str().unwrap_or(""))
        .collect();
    let has = |what: &str, pred: &dyn Fn(&Value) -> bool| {
        assert!(
            traced.iter().any(pred),
            "no applicative trace for {what}; traced requests: {requests:#?}"
        );
    };
    has("the HTTP search", &|t| {
        t["action"] == "recherche"
            && t["request"] == "/v1/traces?actor=dpi-server&action=consultation"
            && t["response"]["status"] == "200"
    });
    has("the refused write", &|t| {
        t["request"] == "POST /v1/traces" && t["response"]["status"] == "403"
    });
    has("registre search", &|t| {
        t["action"] == "recherche"
            && t["request"].as_str().is_some_and(|r| {
                r.starts_with("/v1/traces?") && r.contains("mailbox=") && !r.contains("proofs")
            })
    });
    has("the export's search (with proofs)", &|t| {
        t["action"] == "recherche"
            && t["request"]
                .as_str()
                .is_some_and(|r| r.starts_with("/v1/traces?") && r.contains("proofs=true"))
    });
    has("the export", &|t| {
        t["action"] == "export"
            && t["request"] == format!("/v1/exports?actor={PRODUCER}&reason={REASON}").as_str()
    });
    // The producer's refused read is traced too, under its own name.
    let producer_traces = applicative_traces_of(&server, PRODUCER).await;
    assert!(
        producer_traces
            .iter()
            .any(|t| t["actor"]["auth"] == "apikey"
                && t["response"]["status"] == "403"
                && t["request"] == "GET /v1/traces"),
        "{producer_traces:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_out_of_bounds_tokens_get_401_with_the_reason() {
    let issuer = TestIssuer::start().await;
    let s = setup(Some(&issuer));
    let server = serve(&s);

    // Accepted: the issuer's genuine tokens, whatever its key type.
    for (kid, alg) in [
        ("rsa-1", "RS256"),
        ("rsa-1", "PS256"),
        ("ec-1", "ES256"),
        ("ed-1", "EdDSA"),
    ] {
        let t = issuer.issue(&issuer.claims(), kid, alg);
        let a = get(&server, &t, "/v1/logs").await;
        assert_eq!(a.status, 200, "{alg} token: {}", a.raw);
    }

    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = issuer.claims();
        edit(&mut c);
        c
    };
    let now = now();
    let valid = issuer.issue(&issuer.claims(), "rsa-1", "RS256");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            issuer.issue(&issuer.claims(), "rsa-1", "none"),
            "algorithm none is not accepted",
        ),
        (
            "HS256 keyed with the RSA public key",
            issuer.issue(&issuer.claims(), "rsa-1", "HS256"),
            "HMAC algorithms are not accepted",
        ),
        (
            "wrong iss",
            issuer.issue(
                &with(&|c| c["iss"] = json!("https://evil.example/auth/realms/esante-wallet")),
                "rsa-1",
                "RS256",
            ),
            "is not configured",
        ),
        (
            "wrong aud",
            issuer.issue(
                &with(&|c| c["aud"] = json!("another-client")),
                "rsa-1",
                "RS256",
            ),
            "audience does not include",
        ),
        (
            "expired",
            issuer.issue(
                &with(&|c| {
                    c["exp"] = json!(now - 3600);
                    c["nbf"] = json!(now - 7200);
                    c["iat"] = json!(now - 7200);
                }),
                "rsa-1",
                "RS256",
            ),
            "expired",
        ),
        (
            "nbf in the future",
            issuer.issue(
                &with(&|c| {
                    c["nbf"] = json!(now + 3600);
                    c["exp"] = json!(now + 7200);
                }),
                "rsa-1",
                "RS256",
            ),
            "not valid before",
        ),
        (
            "unknown kid",
            issuer.issue(&issuer.claims(), "rsa-unknown", "RS256"),
            "unknown key id",
        ),
        (
            "tampered payload",
            tamper(&valid, |c| c[ROLE_CLAIM] = json!("admin")),
            "signature does not verify",
        ),
        (
            "acr below eidas1",
            issuer.issue(&with(&|c| c["acr"] = json!("eidas0")), "rsa-1", "RS256"),
            "below the required eidas1",
        ),
        (
            "no role rule matches",
            issuer.issue(
                &with(&|c| c[ROLE_CLAIM] = json!("secretaire")),
                "rsa-1",
                "RS256",
            ),
            "no role",
        ),
        (
            "no acr",
            issuer.issue(
                &with(&|c| {
                    c.as_object_mut().map(|o| o.remove("acr"));
                }),
                "rsa-1",
                "RS256",
            ),
            "no acr",
        ),
    ];
    let mut failures = Vec::new();
    for (what, token, reason) in &cases {
        for path in ["/v1/traces?actor=dpi-server", "/v1/logs"] {
            let a = get(&server, token, path).await;
            let detail = a.body["detail"].as_str().unwrap_or("");
            if a.status != 401
                || !a.www_authenticate.starts_with("Bearer")
                || a.body["type"] != "urn:registre:problem:unauthorized"
                || !detail.contains(reason)
                || a.raw.contains(token.as_str())
            {
                failures.push(format!(
                    "{what} on {path}: {} {} (expected 401 with {reason:?})",
                    a.status, a.raw
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // The genuine token still works after the attacks (no lock-out, the
    // unknown kid did not break the key cache).
    let a = get(&server, &valid, "/v1/traces?actor=dpi-server").await;
    assert_eq!(a.status, 200, "{}", a.raw);
    // A refused token wrote nothing under the actor it claims.
    let traced = applicative_traces_of(&server, RPPS).await;
    assert!(
        traced
            .iter()
            .all(|t| t["response"]["status"] == "200" && t["actor"]["auth"] == "psc"),
        "{traced:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_list_never_shows_a_secret_revoke_is_immediate_admin_creation_alerts() {
    let s = setup(None);
    let server = serve(&s);
    let producer = create_key(&server, "producteur", PRODUCER);
    let auditor = create_key(&server, "auditeur", "dpo");
    let secret_part = |k: &str| k.rsplit('_').next().unwrap_or("").to_owned();

    let o = registre(
        &server,
        None,
        &[
            "keys".as_ref(),
            "list".as_ref(),
            "--token-file".as_ref(),
            admin_token_file(&server).as_os_str(),
        ],
    );
    assert!(o.status.success(), "keys list: {}", text(&o.stderr));
    let listed = text(&o.stdout);
    let lines: Vec<&str> = listed.lines().collect();
    assert!(lines[0].starts_with("ID"), "{listed}");
    let producer_line = lines
        .iter()
        .find(|l| l.contains(PRODUCER))
        .unwrap_or_else(|| panic!("no {PRODUCER} in\n{listed}"));
    assert!(producer_line.contains("producteur") && producer_line.ends_with("active"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("dpo") && l.contains("auditeur"))
    );
    assert!(lines.iter().any(|l| l.contains("admin")), "{listed}");
    for secret in [&producer, &auditor, &server.token] {
        assert!(
            !listed.contains(secret.as_str()),
            "a secret is listed:\n{listed}"
        );
        assert!(
            !listed.contains(&secret_part(secret)),
            "a secret is listed:\n{listed}"
        );
    }
    // The key id is the middle part of the secret.
    let id = producer.split('_').nth(1).expect("rgk_<id>_<secret>");
    assert!(producer_line.starts_with(id), "{producer_line} vs {id}");

    // Revoke: the key stops working at once, with the reason.
    let a = post_traces(&server, &producer, trace_json(PRODUCER, "1", "mss")).await;
    assert_eq!(a.status, 201, "{}", a.raw);
    let o = registre(
        &server,
        None,
        &[
            "keys".as_ref(),
            "revoke".as_ref(),
            id.as_ref(),
            "--token-file".as_ref(),
            admin_token_file(&server).as_os_str(),
        ],
    );
    assert!(o.status.success(), "keys revoke: {}", text(&o.stderr));
    let a = post_traces(&server, &producer, trace_json(PRODUCER, "2", "mss")).await;
    assert_eq!(a.status, 401, "revoked key: {}", a.raw);
    assert!(
        a.body["detail"].as_str().unwrap_or("").contains("revoked"),
        "{}",
        a.raw
    );
    // The CLI reports it too.
    let jsonl = s.root.join("one.jsonl");
    std::fs::write(&jsonl, trace_json(PRODUCER, "3", "mss")).expect("write");
    let o = registre(
        &server,
        Some(&producer),
        &["append".as_ref(), "--quiet".as_ref(), jsonl.as_os_str()],
    );
    assert!(!o.status.success(), "append with a revoked key succeeded");
    assert!(text(&o.stderr).contains("401"), "{}", text(&o.stderr));
    let o = registre(
        &server,
        None,
        &[
            "keys".as_ref(),
            "list".as_ref(),
            "--token-file".as_ref(),
            admin_token_file(&server).as_os_str(),
        ],
    );
    assert!(o.status.success());
    assert!(
        text(&o.stdout)
            .lines()
            .any(|l| l.starts_with(id) && l.contains("revoked")),
        "{}",
        text(&o.stdout)
    );
    // Revoking an unknown key fails.
    let o = registre(
        &server,
        None,
        &[
            "keys".as_ref(),
            "revoke".as_ref(),
            "ffffffff".as_ref(),
            "--token-file".as_ref(),
            admin_token_file(&server).as_os_str(),
        ],
    );
    assert!(!o.status.success(), "revoking an unknown key succeeded");

    // Only admins manage keys.
    let o = registre(&server, Some(&auditor), &["keys".as_ref(), "list".as_ref()]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("403"), "{}", text(&o.stderr));

    // Creating an admin key raises the alert counter; others do not.
    let before = admin_alerts(&server).await;
    create_key(&server, "auditeur", "dpo-2");
    assert_eq!(admin_alerts(&server).await, before);
    let admin = create_key(&server, "admin", "second-admin");
    assert_eq!(admin_alerts(&server).await, before + 1);
    // So does a trusted proxy key (it may write for any author).
    let proxy = create_key_with(&server, "producteur", "mssante-proxy", &["--trusted-proxy"]);
    assert_eq!(admin_alerts(&server).await, before + 2);
    let a = post_traces(&server, &proxy, trace_json("810000000042", "9", "mss")).await;
    assert_eq!(a.status, 201, "trusted proxy key: {}", a.raw);
    // The new admin key works; every key operation is traced under the
    // bootstrap admin.
    let a = get(&server, &admin, "/v1/keys").await;
    assert_eq!(a.status, 200, "{}", a.raw);
    let traced = applicative_traces_of(&server, "admin").await;
    let creations = traced
        .iter()
        .filter(|t| t["action"] == "creation" && t["request"] == "/v1/keys")
        .count();
    assert_eq!(creations, 5, "{traced:#?}");
    assert!(
        traced.iter().any(|t| t["action"] == "suppression"
            && t["request"]
                .as_str()
                .is_some_and(|r| r.starts_with("/v1/keys") && r.contains(id))),
        "{traced:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_revocations_survive_a_restart_and_the_bootstrap_key_is_not_readopted() {
    let s = setup(None);
    let mut server = serve(&s);
    let bootstrap = server.token.clone();
    let producer = create_key(&server, "producteur", PRODUCER);
    let admin = create_key(&server, "admin", "second-admin");
    // The second admin revokes the bootstrap key, as the docs advise.
    let keys = get(&server, &admin, "/v1/keys").await;
    assert_eq!(keys.status, 200, "{}", keys.raw);
    let bootstrap_id = keys.body["keys"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["name"] == "admin"))
        .and_then(|k| k["id"].as_str())
        .expect("the bootstrap key is listed")
        .to_owned();
    let o = registre(
        &server,
        Some(&admin),
        &["keys".as_ref(), "revoke".as_ref(), bootstrap_id.as_ref()],
    );
    assert!(
        o.status.success(),
        "revoke the bootstrap key: {}",
        text(&o.stderr)
    );
    let a = get(&server, &bootstrap, "/v1/logs").await;
    assert_eq!(a.status, 401, "{}", a.raw);

    // Restart (SIGKILL, then the same data directory).
    server.kill9();
    drop(server);
    let server = serve(&s);
    assert_eq!(server.token, bootstrap, "the admin token file changed");
    let a = get(&server, &bootstrap, "/v1/logs").await;
    assert_eq!(a.status, 401, "the bootstrap key came back: {}", a.raw);
    assert!(
        a.body["detail"].as_str().unwrap_or("").contains("revoked"),
        "{}",
        a.raw
    );
    let a = get(&server, &admin, "/v1/logs").await;
    assert_eq!(a.status, 200, "{}", a.raw);
    let a = post_traces(&server, &producer, trace_json(PRODUCER, "1", "mss")).await;
    assert_eq!(a.status, 201, "the producer key after a restart: {}", a.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_issuer_does_not_stop_the_server_and_its_tokens_get_503() {
    // The configured issuer listens nowhere; the test issuer mints tokens
    // that name it.
    let issuer = TestIssuer::start().await;
    let down = format!("http://127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("registre.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[access.oidc]]
name = "psc"
issuer = "{down}"
audience = ["{AUDIENCE}"]
required_acr = "eidas1"
role_rules = [{{ claim = "{ROLE_CLAIM}", value = "auditeur", role = "auditeur" }}]
"#
        ),
    )
    .expect("write");
    let server = Server::start_with(
        &dir.path().join("data"),
        free_port(),
        &[OsStr::new("--config"), config.as_os_str()],
    );
    let mut claims = issuer.claims();
    claims["iss"] = json!(down);
    let jwt = issuer.issue(&claims, "rsa-1", "RS256");
    let r = reqwest::Client::new()
        .get(format!("{}/v1/logs", server.url))
        .bearer_auth(&jwt)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 503, "a token of an unreachable issuer");
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(
        v["detail"]
            .as_str()
            .is_some_and(|d| d.contains("cannot be reached")),
        "{v}"
    );
    // API keys do not depend on the provider.
    let a = get(&server, &server.token, "/v1/logs").await;
    assert_eq!(a.status, 200, "{}", a.raw);
}
