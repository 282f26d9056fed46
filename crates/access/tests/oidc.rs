//! OIDC bearer tokens against the test issuer (a real HTTP server with real
//! keys, standing in for Pro Santé Connect): the JWT attack matrix, the
//! accepted algorithms, key rotation, discovery, and the PSC client flows
//! (authorization code with PKCE, CIBA) the issuer offers.

mod support;

use std::time::Duration;

use registre_access::{
    AuthError, AuthMethod, Discovery, OidcIssuer, OidcValidator, Principal, Role, RoleRule,
};
use serde_json::{Value, json};
use support::issuer::{
    AUDIENCE, CIBA_GRANT, IssuerOptions, KeyKind, PSC_REALM, ROLE_CLAIM, RPPS, TestIssuer, now,
    pkce, tamper,
};

fn rule(value: &str, role: Role) -> RoleRule {
    RoleRule {
        claim: ROLE_CLAIM.into(),
        value: value.into(),
        role,
    }
}

/// The configuration a PSC deployment would have, pointed at `issuer`.
fn config(issuer: &TestIssuer) -> OidcIssuer {
    OidcIssuer {
        required_acr: Some("eidas1".into()),
        role_rules: vec![
            rule("producteur", Role::Producteur),
            rule("auditeur", Role::Auditeur),
            rule("admin", Role::Admin),
        ],
        ..OidcIssuer::new("psc", issuer.issuer(), &[AUDIENCE])
    }
}

fn validator(cfg: OidcIssuer) -> OidcValidator {
    OidcValidator::new(vec![cfg]).unwrap_or_else(|e| panic!("config refused: {e}"))
}

fn remove(claims: &mut Value, name: &str) {
    if let Some(c) = claims.as_object_mut() {
        c.remove(name);
    }
}

async fn setup() -> (TestIssuer, OidcValidator) {
    let issuer = TestIssuer::start().await;
    let v = validator(config(&issuer));
    (issuer, v)
}

async fn accepted(v: &OidcValidator, token: &str) -> Principal {
    match v.authenticate(token).await {
        Ok(Some(p)) => p,
        other => panic!("token refused: {other:?}"),
    }
}

/// Asserts a refusal whose reason contains `needle` and never the token.
async fn refused(v: &OidcValidator, token: &str, needle: &str) -> String {
    match v.authenticate(token).await {
        Err(AuthError::Token(reason)) => {
            assert!(
                reason.contains(needle),
                "reason {reason:?} does not name {needle:?}"
            );
            for part in token.split('.').filter(|p| p.len() > 8) {
                assert!(!reason.contains(part), "reason {reason:?} echoes the token");
            }
            reason
        }
        other => panic!("expected a refusal naming {needle:?}, got {other:?}"),
    }
}

// --- the attack matrix ----------------------------------------------------

#[tokio::test]
async fn alg_none_is_refused() {
    let (issuer, v) = setup().await;
    let claims = issuer.claims();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = issuer.issue(&claims, "rsa-1", alg);
        assert!(token.ends_with('.'), "unsigned: {token}");
        refused(&v, &token, "algorithm none is not accepted").await;
    }
    // alg none with a (genuine RS256) signature glued on is no better.
    let signed = issuer.issue(&claims, "rsa-1", "RS256");
    let (_, signature) = signed.rsplit_once('.').unwrap_or_default();
    let unsigned = issuer.issue(&claims, "rsa-1", "none");
    refused(&v, &format!("{unsigned}{signature}"), "algorithm none").await;
    // No key was even fetched for these.
    assert_eq!(issuer.hits("/jwks"), 0);
}

#[tokio::test]
async fn hs256_keyed_with_the_rsa_public_key_is_refused() {
    let (issuer, v) = setup().await;
    let claims = issuer.claims();
    // The classic key confusion: the verifier's RSA public key, in every
    // form a naive library might hand to HMAC as the secret.
    let secrets: Vec<Vec<u8>> = vec![
        issuer.rsa_public_key_pem("rsa-1").into_bytes(),
        issuer.rsa_public_key_pkcs1_pem("rsa-1").into_bytes(),
        issuer.rsa_public_key_der("rsa-1"),
        issuer.rsa_public_key_jwk("rsa-1").to_string().into_bytes(),
    ];
    for secret in &secrets {
        let token = issuer.issue_hmac(&claims, "rsa-1", secret);
        refused(&v, &token, "HMAC algorithms are not accepted").await;
    }
    refused(&v, &issuer.issue(&claims, "rsa-1", "HS256"), "HMAC").await;
    for alg in ["HS384", "HS512", "hs256"] {
        refused(&v, &issuer.issue(&claims, "rsa-1", alg), "HMAC").await;
    }
}

#[tokio::test]
async fn other_algorithms_and_key_type_mismatches_are_refused() {
    let (issuer, v) = setup().await;
    let claims = issuer.claims();
    for alg in ["RS512", "ES384", "PS512", "RSA-OAEP"] {
        refused(
            &v,
            &issuer.issue(&claims, "rsa-1", alg),
            "is not accepted: only RS256, PS256, ES256 and EdDSA",
        )
        .await;
    }
    // The JWK's kty must fit the header's alg.
    let t = issuer.issue(&claims, "ec-1", "RS256");
    refused(
        &v,
        &t,
        "key \"ec-1\" is an EC P-256 key, it cannot verify RS256",
    )
    .await;
    let t = issuer.issue(&claims, "rsa-1", "ES256");
    refused(
        &v,
        &t,
        "key \"rsa-1\" is an RSA key, it cannot verify ES256",
    )
    .await;
    let t = issuer.issue(&claims, "ed-1", "ES256");
    refused(&v, &t, "cannot verify ES256").await;
    // A JWK that declares its alg is used for that alg only.
    issuer.add_key("rsa-rs", KeyKind::Rsa, Some("RS256"), true);
    let t = issuer.issue(&claims, "rsa-rs", "PS256");
    refused(
        &v,
        &t,
        "key \"rsa-rs\" is declared for \"RS256\", not PS256",
    )
    .await;
    assert_eq!(
        accepted(&v, &issuer.issue(&claims, "rsa-rs", "RS256"))
            .await
            .id,
        RPPS
    );
    // The encryption key of the JWKS never verifies anything.
    refused(
        &v,
        &issuer.issue(&claims, "enc-1", "RS256"),
        "unknown key id \"enc-1\"",
    )
    .await;
}

#[tokio::test]
async fn wrong_issuer_is_refused_without_fetching() {
    let (issuer, v) = setup().await;
    let mut claims = issuer.claims();
    claims["iss"] = json!("https://evil.example/realms/psc");
    let t = issuer.issue(&claims, "rsa-1", "RS256");
    refused(
        &v,
        &t,
        "issuer \"https://evil.example/realms/psc\" is not configured",
    )
    .await;
    // Exact match: a trailing slash is another issuer.
    claims["iss"] = json!(format!("{}/", issuer.issuer()));
    refused(
        &v,
        &issuer.issue(&claims, "rsa-1", "RS256"),
        "is not configured",
    )
    .await;
    remove(&mut claims, "iss");
    refused(
        &v,
        &issuer.issue(&claims, "rsa-1", "RS256"),
        "token has no iss",
    )
    .await;
    assert_eq!(issuer.hits("/jwks"), 0);
    assert_eq!(issuer.hits("/.well-known/openid-configuration"), 0);
}

#[tokio::test]
async fn another_issuers_signature_under_our_iss_is_refused() {
    let (issuer, v) = setup().await;
    // The attacker's own key, never published, signing under our kid.
    issuer.add_key("attacker", KeyKind::Rsa, None, false);
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"});
    let t = issuer.issue_signed_by(&header, &issuer.claims(), "attacker");
    refused(&v, &t, "signature does not verify").await;
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    let (issuer, v) = setup().await;
    let mut claims = issuer.claims();
    claims["aud"] = json!("another-service");
    refused(
        &v,
        &issuer.issue(&claims, "rsa-1", "RS256"),
        "audience does not include \"registre\"",
    )
    .await;
    claims["aud"] = json!(["another-service", "account"]);
    refused(
        &v,
        &issuer.issue(&claims, "ec-1", "ES256"),
        "audience does not include",
    )
    .await;
    remove(&mut claims, "aud");
    refused(
        &v,
        &issuer.issue(&claims, "ec-1", "ES256"),
        "token has no aud",
    )
    .await;
    // One of several audiences is enough.
    claims["aud"] = json!(["account", AUDIENCE]);
    accepted(&v, &issuer.issue(&claims, "ec-1", "ES256")).await;
}

#[tokio::test]
async fn expired_token_is_refused() {
    let (issuer, v) = setup().await;
    let mut claims = issuer.claims();
    claims["iat"] = json!(now() - 3600);
    claims["nbf"] = json!(now() - 3600);
    claims["exp"] = json!(now() - 61); // beyond the 60 s leeway
    refused(
        &v,
        &issuer.issue(&claims, "rsa-1", "RS256"),
        "token expired",
    )
    .await;
    claims["exp"] = json!(now() - 30); // within it
    accepted(&v, &issuer.issue(&claims, "rsa-1", "RS256")).await;
    remove(&mut claims, "exp");
    refused(
        &v,
        &issuer.issue(&claims, "rsa-1", "RS256"),
        "token has no exp",
    )
    .await;
}

#[tokio::test]
async fn not_yet_valid_token_is_refused() {
    let (issuer, v) = setup().await;
    let mut claims = issuer.claims();
    claims["nbf"] = json!(now() + 600);
    refused(
        &v,
        &issuer.issue(&claims, "rsa-1", "RS256"),
        "token not valid before",
    )
    .await;
    claims["nbf"] = json!(now() + 30); // within the leeway
    accepted(&v, &issuer.issue(&claims, "rsa-1", "RS256")).await;
    claims["iat"] = json!(now() + 600);
    refused(
        &v,
        &issuer.issue(&claims, "rsa-1", "RS256"),
        "token issued in the future",
    )
    .await;
}

#[tokio::test]
async fn unknown_kid_is_refused_after_one_rate_limited_refresh() {
    let (issuer, v) = setup().await;
    let claims = issuer.claims();
    // Genuinely signed (with rsa-1's key) but under a kid the JWKS lacks.
    let t = issuer.issue(&claims, "ghost", "RS256");
    refused(
        &v,
        &t,
        "unknown key id \"ghost\" (not in the refreshed JWKS of psc)",
    )
    .await;
    let after_first = issuer.hits("/jwks");
    assert_eq!(
        after_first, 1,
        "first use loads the JWKS, and that is the refresh"
    );
    // A known kid next: served from the cache.
    accepted(&v, &issuer.issue(&claims, "rsa-1", "RS256")).await;
    assert_eq!(issuer.hits("/jwks"), 1);
    // A second unknown kid: one refresh...
    let t = issuer.issue(&claims, "ghost-2", "RS256");
    refused(
        &v,
        &t,
        "unknown key id \"ghost-2\" (not in the refreshed JWKS",
    )
    .await;
    assert_eq!(issuer.hits("/jwks"), 2);
    // ...and within the refresh interval, none: random kids cannot make
    // registre hammer the provider.
    for i in 0..5 {
        let t = issuer.issue(&claims, &format!("ghost-{}", i + 3), "RS256");
        refused(&v, &t, "unknown key id").await;
    }
    assert_eq!(issuer.hits("/jwks"), 2);
}

#[tokio::test]
async fn tampered_payload_is_refused() {
    let (issuer, v) = setup().await;
    let claims = issuer.claims();
    for (kid, alg) in [
        ("rsa-1", "RS256"),
        ("rsa-1", "PS256"),
        ("ec-1", "ES256"),
        ("ed-1", "EdDSA"),
    ] {
        let genuine = issuer.issue(&claims, kid, alg);
        accepted(&v, &genuine).await;
        let forged = tamper(&genuine, |c| c[ROLE_CLAIM] = json!("admin"));
        refused(&v, &forged, "signature does not verify").await;
        let forged = tamper(&genuine, |c| c["SubjectNameID"] = json!("810009999999"));
        refused(&v, &forged, "signature does not verify").await;
    }
    // A signature from a token of another subject does not fit either.
    let a = issuer.issue(&issuer.claims_for("810000000001"), "rsa-1", "RS256");
    let b = issuer.issue(&issuer.claims_for("810000000002"), "rsa-1", "RS256");
    let (a_input, _) = a.rsplit_once('.').unwrap_or_default();
    let (_, b_signature) = b.rsplit_once('.').unwrap_or_default();
    refused(
        &v,
        &format!("{a_input}.{b_signature}"),
        "signature does not verify",
    )
    .await;
}

#[tokio::test]
async fn acr_below_required_is_refused() {
    let (issuer, v) = setup().await;
    let mut claims = issuer.claims();
    claims["acr"] = json!("eidas-low");
    refused(
        &v,
        &issuer.issue(&claims, "rsa-1", "RS256"),
        "acr \"eidas-low\" is below the required eidas1",
    )
    .await;
    remove(&mut claims, "acr");
    refused(
        &v,
        &issuer.issue(&claims, "rsa-1", "RS256"),
        "token has no acr (eidas1 required)",
    )
    .await;

    // With a configured order, a stronger acr passes and a weaker one not.
    let ordered = validator(OidcIssuer {
        acr_order: vec!["eidas-low".into(), "eidas1".into(), "eidas-high".into()],
        ..config(&issuer)
    });
    claims["acr"] = json!("eidas-high");
    let p = accepted(&ordered, &issuer.issue(&claims, "rsa-1", "RS256")).await;
    assert_eq!(
        p.method,
        AuthMethod::Oidc {
            issuer: issuer.issuer().to_owned(),
            acr: Some("eidas-high".into())
        }
    );
    claims["acr"] = json!("eidas-low");
    refused(
        &ordered,
        &issuer.issue(&claims, "rsa-1", "RS256"),
        "is below",
    )
    .await;
}

#[tokio::test]
async fn malformed_and_exotic_tokens_are_refused() {
    let (issuer, v) = setup().await;
    let claims = issuer.claims();
    let crit = json!({"alg": "RS256", "kid": "rsa-1", "crit": ["b64"], "b64": false});
    refused(
        &v,
        &issuer.issue_with_header(&crit, &claims),
        "critical header extensions",
    )
    .await;
    // A key embedded in the header is never used.
    let embedded = json!({
        "alg": "RS256", "kid": "attacker",
        "jwk": issuer.rsa_public_key_jwk("rsa-1"),
        "jku": format!("{}/jwks", issuer.issuer()),
    });
    refused(
        &v,
        &issuer.issue_with_header(&embedded, &claims),
        "unknown key id",
    )
    .await;
    refused(
        &v,
        "eyJhbGciOiJSUzI1NiJ9.e30.c2ln.aXY.dGFn",
        "encrypted tokens (JWE)",
    )
    .await;
    refused(
        &v,
        "bm90IGpzb24.e30.c2ln",
        "token header is not base64url-encoded JSON",
    )
    .await;
    let header_only = issuer.issue(&claims, "rsa-1", "RS256");
    let (h, _) = header_only.split_once('.').unwrap_or_default();
    refused(&v, &format!("{h}.bm90IGpzb24.c2ln"), "token payload is not").await;
}

// --- accepted tokens ------------------------------------------------------

#[tokio::test]
async fn valid_tokens_of_every_algorithm_map_to_the_principal() {
    let (issuer, v) = setup().await;
    let claims = issuer.claims();
    for (kid, alg) in [
        ("rsa-1", "RS256"),
        ("rsa-1", "PS256"),
        ("ec-1", "ES256"),
        ("ed-1", "EdDSA"),
    ] {
        let p = accepted(&v, &issuer.issue(&claims, kid, alg)).await;
        assert_eq!(
            p,
            Principal {
                id: RPPS.into(),
                auth: "psc".into(),
                roles: vec![Role::Auditeur],
                trusted_proxy: false,
                method: AuthMethod::Oidc {
                    issuer: issuer.issuer().to_owned(),
                    acr: Some("eidas1".into()),
                },
            },
            "{alg}"
        );
    }
    // One discovery, one JWKS for all of them.
    assert_eq!(issuer.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(issuer.hits("/jwks"), 1);
}

#[tokio::test]
async fn claims_map_to_actor_and_roles() {
    let (issuer, v) = setup().await;
    // No SubjectNameID: the actor is `sub`.
    let mut claims = issuer.claims();
    remove(&mut claims, "SubjectNameID");
    let sub = claims["sub"].as_str().unwrap_or_default().to_owned();
    let p = accepted(&v, &issuer.issue(&claims, "ec-1", "ES256")).await;
    assert_eq!(p.id, sub);
    // Neither: refused.
    remove(&mut claims, "sub");
    refused(
        &v,
        &issuer.issue(&claims, "ec-1", "ES256"),
        "none of the actor claims SubjectNameID, sub",
    )
    .await;

    // An array role claim gives every matching role; admin implies all.
    let mut claims = issuer.claims();
    claims[ROLE_CLAIM] = json!(["producteur", "auditeur", "unknown"]);
    let p = accepted(&v, &issuer.issue(&claims, "rsa-1", "RS256")).await;
    assert_eq!(p.roles, vec![Role::Auditeur, Role::Producteur]);
    claims[ROLE_CLAIM] = json!("admin");
    let p = accepted(&v, &issuer.issue(&claims, "rsa-1", "RS256")).await;
    assert_eq!(p.roles, vec![Role::Admin, Role::Auditeur, Role::Producteur]);

    // A valid token no rule gives a role to: refused, "no role".
    claims[ROLE_CLAIM] = json!("infirmier");
    let reason = refused(&v, &issuer.issue(&claims, "rsa-1", "RS256"), "no role").await;
    assert!(reason.contains(RPPS), "{reason}");
    remove(&mut claims, ROLE_CLAIM);
    refused(&v, &issuer.issue(&claims, "rsa-1", "RS256"), "no role").await;

    // ...unless a default role is configured; trusted_proxy is carried.
    let lenient = validator(OidcIssuer {
        default_role: Some(Role::Producteur),
        trusted_proxy: true,
        ..config(&issuer)
    });
    let p = accepted(&lenient, &issuer.issue(&claims, "rsa-1", "RS256")).await;
    assert_eq!(p.roles, vec![Role::Producteur]);
    assert!(p.trusted_proxy);
}

#[tokio::test]
async fn a_key_rotated_into_the_jwks_is_picked_up() {
    let (issuer, v) = setup().await;
    let claims = issuer.claims();
    accepted(&v, &issuer.issue(&claims, "rsa-1", "RS256")).await;
    assert_eq!(issuer.hits("/jwks"), 1);

    issuer.add_key("rsa-2", KeyKind::Rsa, Some("RS256"), true);
    issuer.publish("rsa-1", false);
    let p = accepted(&v, &issuer.issue(&claims, "rsa-2", "RS256")).await;
    assert_eq!(p.id, RPPS);
    assert_eq!(issuer.hits("/jwks"), 2, "one refresh for the new kid");
    accepted(&v, &issuer.issue(&claims, "rsa-2", "RS256")).await;
    assert_eq!(issuer.hits("/jwks"), 2, "then cached");
    // The withdrawn key went with the refresh.
    refused(
        &v,
        &issuer.issue(&claims, "rsa-1", "RS256"),
        "unknown key id \"rsa-1\"",
    )
    .await;

    // An EC key rotated in works the same way (the refresh interval is
    // per unknown kid *after* a forced refresh, so use a fresh validator).
    issuer.add_key("ec-2", KeyKind::Ec, None, true);
    let v2 = validator(config(&issuer));
    accepted(&v2, &issuer.issue(&claims, "ec-2", "ES256")).await;
}

#[tokio::test]
async fn wallet_discovery_as_psc_publishes_it() {
    let issuer = TestIssuer::start_with(IssuerOptions {
        realm_path: PSC_REALM.into(),
        ..IssuerOptions::default()
    })
    .await;
    assert!(issuer.issuer().ends_with("/auth/realms/esante-wallet"));
    // required_acr unset: wallet discovery (PSC) requires eidas1.
    let cfg = OidcIssuer {
        discovery: Discovery::Wallet,
        required_acr: None,
        ..config(&issuer)
    };
    assert_eq!(cfg.effective_required_acr(), Some("eidas1"));
    let v = validator(cfg);
    let p = accepted(&v, &issuer.issue(&issuer.claims(), "rsa-1", "RS256")).await;
    assert_eq!(p.id, RPPS);
    assert_eq!(issuer.hits("/.well-known/wallet-openid-configuration"), 1);
    assert_eq!(issuer.hits("/.well-known/openid-configuration"), 0);
    let mut weak = issuer.claims();
    weak["acr"] = json!("eidas-low");
    refused(
        &v,
        &issuer.issue(&weak, "rsa-1", "RS256"),
        "below the required eidas1",
    )
    .await;

    // The psc preset is the same configuration.
    let preset = OidcIssuer {
        role_rules: vec![rule("auditeur", Role::Auditeur)],
        ..OidcIssuer::psc(issuer.issuer(), &[AUDIENCE])
    };
    let v = validator(preset);
    accepted(&v, &issuer.issue(&issuer.claims(), "ec-1", "ES256")).await;
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_unavailable() {
    let issuer = TestIssuer::start().await;
    // Same server under another name: its documents say 127.0.0.1.
    let alias = issuer.issuer().replace("127.0.0.1", "localhost");
    let mut cfg = config(&issuer);
    cfg.issuer = alias.clone();
    let v = validator(cfg);
    let mut claims = issuer.claims();
    claims["iss"] = json!(alias);
    let r = v
        .authenticate(&issuer.issue(&claims, "rsa-1", "RS256"))
        .await;
    assert!(
        matches!(r, Err(AuthError::Unavailable(ref m)) if m.contains("names issuer")),
        "{r:?}"
    );
    assert_eq!(issuer.hits("/jwks"), 0);
}

#[tokio::test]
async fn unreachable_issuer_is_unavailable() {
    let mut issuer = TestIssuer::start().await;
    let v = validator(config(&issuer));
    let token = issuer.issue(&issuer.claims(), "rsa-1", "RS256");
    issuer.stop().await;
    match v.authenticate(&token).await {
        Err(AuthError::Unavailable(m)) => {
            assert!(m.contains("psc"), "{m}");
            assert!(!m.contains(&token), "{m}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(v.prefetch().await.is_err());
}

#[tokio::test]
async fn cached_keys_outlive_a_provider_outage() {
    let mut issuer = TestIssuer::start().await;
    // Keys are "stale" at once, so every call tries to refresh them.
    let v = validator(config(&issuer)).with_jwks_max_age(Duration::ZERO);
    let token = issuer.issue(&issuer.claims(), "rsa-1", "RS256");
    v.prefetch()
        .await
        .unwrap_or_else(|e| panic!("prefetch: {e}"));
    let ghost = issuer.issue(&issuer.claims(), "ghost", "RS256");
    issuer.stop().await;
    // The refresh fails; the last keys are used.
    accepted(&v, &token).await;
    // An unknown kid needs the provider: unavailable, not "unknown".
    let r = v.authenticate(&ghost).await;
    assert!(matches!(r, Err(AuthError::Unavailable(_))), "{r:?}");
}

#[tokio::test]
async fn a_slow_refresh_does_not_hold_up_tokens_whose_key_is_cached() {
    let (issuer, v) = setup().await;
    let claims = issuer.claims();
    let known = issuer.issue(&claims, "rsa-1", "RS256");
    accepted(&v, &known).await;
    issuer.set_jwks_delay(Duration::from_millis(1500));
    let ghost = issuer.issue(&claims, "ghost", "RS256");
    let started = std::time::Instant::now();
    let mut slow = Box::pin(v.authenticate(&ghost));
    // Start the forced refresh, then check a known-kid token meanwhile.
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(slow.as_mut().poll(cx))).await;
    assert!(first.is_pending());
    accepted(&v, &known).await;
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "waited {:?} for a cached key",
        started.elapsed()
    );
    let r = slow.await;
    assert!(
        matches!(r, Err(AuthError::Token(ref m)) if m.contains("unknown key id")),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_hanging_provider_times_out_as_unavailable() {
    let issuer = TestIssuer::start().await;
    issuer.set_jwks_delay(Duration::from_secs(5));
    let v = validator(config(&issuer)).with_http_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let r = v
        .authenticate(&issuer.issue(&issuer.claims(), "rsa-1", "RS256"))
        .await;
    assert!(matches!(r, Err(AuthError::Unavailable(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn concurrent_first_requests_fetch_the_keys_once() {
    let (issuer, v) = setup().await;
    let token = issuer.issue(&issuer.claims(), "ec-1", "ES256");
    let results =
        futures_join_all((0..8).map(|_| v.authenticate(&token)).collect::<Vec<_>>()).await;
    for r in results {
        assert!(matches!(r, Ok(Some(_))), "{r:?}");
    }
    assert_eq!(issuer.hits("/jwks"), 1);
}

/// Polls all futures on this task (no extra dependency for join_all).
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in set.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

#[tokio::test]
async fn a_bearer_that_is_not_a_jwt_is_left_to_other_authenticators() {
    let (issuer, v) = setup().await;
    for bearer in [
        "rgk_0a1b2c3d_c2VjcmV0LXNlY3JldC1zZWNyZXQ",
        "a-bare-admin-token",
        "",
        "two.parts",
        "four.parts.in.this",
        "has+plus.sign.here",
        "padded=.e30.c2ln",
    ] {
        assert_eq!(v.authenticate(bearer).await, Ok(None), "{bearer}");
    }
    assert_eq!(issuer.hits("/jwks"), 0);
}

#[test]
fn configuration_is_checked() {
    let ok = OidcIssuer {
        role_rules: vec![rule("auditeur", Role::Auditeur)],
        ..OidcIssuer::new("psc", "https://auth.example/realms/x", &[AUDIENCE])
    };
    assert!(OidcValidator::new(vec![ok.clone()]).is_ok());
    assert!(OidcValidator::new(Vec::new()).is_ok_and(|v| v.is_empty()));
    let cases = [
        OidcIssuer {
            issuer: "http://auth.example".into(),
            ..ok.clone()
        },
        OidcIssuer {
            issuer: "not a url".into(),
            ..ok.clone()
        },
        OidcIssuer {
            audience: Vec::new(),
            ..ok.clone()
        },
        OidcIssuer {
            name: "apikey".into(),
            ..ok.clone()
        },
        OidcIssuer {
            name: "PSC prod".into(),
            ..ok.clone()
        },
        OidcIssuer {
            role_rules: Vec::new(),
            ..ok.clone()
        },
        OidcIssuer {
            acr_order: vec!["eidas3".into()],
            required_acr: Some("eidas1".into()),
            ..ok.clone()
        },
    ];
    for bad in cases {
        assert!(OidcValidator::new(vec![bad.clone()]).is_err(), "{bad:?}");
    }
    let twice = OidcValidator::new(vec![ok.clone(), ok]);
    assert!(twice.is_err());
}

#[test]
fn configuration_deserializes_from_toml_like_json() {
    // The `[[access.oidc]]` section another crate reads (same serde model).
    let cfg: OidcIssuer = serde_json::from_value(json!({
        "name": "psc",
        "issuer": "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet",
        "audience": ["registre-chu"],
        "discovery": "wallet",
        "role_rules": [
            {"claim": "registre_role", "value": "auditeur", "role": "auditeur"},
            {"claim": "SubjectRole", "value": "10^1.2.250.1.213.1.1.5.5", "role": "producteur"},
        ],
        "default_role": null,
        "trusted_proxy": false,
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.discovery, Discovery::Wallet);
    assert_eq!(cfg.effective_required_acr(), Some("eidas1"));
    assert_eq!(cfg.role_rules[1].role, Role::Producteur);
    let none_required = OidcIssuer {
        required_acr: Some(String::new()),
        ..cfg
    };
    assert_eq!(none_required.effective_required_acr(), None);
    let bad_role = serde_json::from_value::<OidcIssuer>(json!({
        "name": "psc", "issuer": "https://x.example", "audience": ["a"],
        "role_rules": [{"claim": "r", "value": "v", "role": "superuser"}],
    }));
    assert!(bad_role.is_err());
}

// --- the client flows the test issuer offers -----------------------------

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let r = client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

#[tokio::test]
async fn authorization_code_with_pkce_yields_an_accepted_token() {
    let (issuer, v) = setup().await;
    let (verifier, challenge) = pkce();
    let redirect = "http://127.0.0.1:53682/callback";
    let url = format!(
        "{}?response_type=code&client_id=registre-cli&redirect_uri={}&state=xyz%201&scope=openid&code_challenge={challenge}&code_challenge_method=S256&acr_values=eidas1&nonce=n1",
        issuer.endpoint("/authorize"),
        form_encode(redirect),
    );
    let r = client()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 302);
    let location = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(location.starts_with(redirect), "{location}");
    assert_eq!(query_param(&location, "state").as_deref(), Some("xyz%201"));
    let code = query_param(&location, "code").unwrap_or_default();

    let token_url = issuer.endpoint("/token");
    let wrong = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("client_id", "registre-cli"),
        ("code_verifier", "not-the-verifier"),
    ];
    let (status, body) = post_form(&token_url, &wrong).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // The failed attempt consumed the code: start again, right verifier.
    let r = client()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let location = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let code = query_param(&location, "code").unwrap_or_default();
    let good = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("client_id", "registre-cli"),
        ("code_verifier", verifier.as_str()),
    ];
    let (status, body) = post_form(&token_url, &good).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let access = body["access_token"].as_str().unwrap_or_default();
    let p = accepted(&v, access).await;
    assert_eq!(p.id, RPPS);
    // The id token is for the client, not for registre.
    let id_token = body["id_token"].as_str().unwrap_or_default();
    refused(&v, id_token, "audience does not include").await;
    // A code works once.
    let (status, body) = post_form(&token_url, &good).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Non-loopback redirect URIs are refused outright.
    let evil = url.replace(
        &form_encode(redirect),
        &form_encode("https://evil.example/cb"),
    );
    let r = client()
        .get(&evil)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn ciba_polls_pending_then_slow_down_then_token() {
    let (issuer, v) = setup().await;
    let (status, body) = post_form(
        &issuer.endpoint("/bc-authorize"),
        &[
            ("client_id", "registre-cli"),
            ("scope", "openid scope_all"),
            ("login_hint", "810001234567"),
            ("binding_message", "registre 1234"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["auth_req_id"].as_str().unwrap_or_default().to_owned();
    assert!(body["expires_in"].as_u64().is_some_and(|e| e > 0));
    assert_eq!(body["interval"], 1);

    let poll = [
        ("grant_type", CIBA_GRANT),
        ("auth_req_id", id.as_str()),
        ("client_id", "registre-cli"),
    ];
    let mut answers = Vec::new();
    let token = loop {
        let (status, body) = post_form(&issuer.endpoint("/token"), &poll).await;
        if status == 200 {
            break body["access_token"].as_str().unwrap_or_default().to_owned();
        }
        answers.push(body["error"].as_str().unwrap_or_default().to_owned());
        assert!(answers.len() < 10, "{answers:?}");
    };
    assert_eq!(
        answers,
        [
            "authorization_pending",
            "authorization_pending",
            "slow_down"
        ]
    );
    assert_eq!(accepted(&v, &token).await.id, RPPS);
    // The request is spent.
    let (_, body) = post_form(&issuer.endpoint("/token"), &poll).await;
    assert_eq!(body["error"], "invalid_grant");
    // scope without openid, or no login_hint: refused.
    let (status, _) = post_form(
        &issuer.endpoint("/bc-authorize"),
        &[
            ("client_id", "c"),
            ("scope", "profile"),
            ("login_hint", "x"),
        ],
    )
    .await;
    assert_eq!(status, 400);
}

// --- the mail proxy's synchronous path -------------------------------------

#[tokio::test]
async fn subject_cached_names_the_actor_only_with_cached_keys() {
    let (issuer, v) = setup().await;
    let mut claims = issuer.claims();
    // A mail user holds no role on the journal: not needed here.
    remove(&mut claims, ROLE_CLAIM);
    let token = issuer.issue(&claims, "rsa-1", "RS256");
    // Nothing fetched yet: unavailable, no network from this path.
    assert!(matches!(
        v.subject_cached(&token),
        Err(AuthError::Unavailable(_))
    ));
    v.prefetch().await.expect("prefetch");
    assert_eq!(v.subject_cached(&token).unwrap(), Some(RPPS.to_owned()));
    // Not a JWS: not ours to judge.
    assert_eq!(v.subject_cached("ya29.opaque-token").unwrap(), None);
    // Forged, expired, or from another issuer: refused.
    assert!(matches!(
        v.subject_cached(&tamper(&token, |c| c["sub"] = json!("someone-else"))),
        Err(AuthError::Token(_))
    ));
    let mut expired = issuer.claims();
    expired["exp"] = json!(now() - 3600);
    assert!(
        v.subject_cached(&issuer.issue(&expired, "rsa-1", "RS256"))
            .is_err()
    );
    let mut other = issuer.claims();
    other["iss"] = json!("https://elsewhere.example");
    assert!(
        v.subject_cached(&issuer.issue(&other, "rsa-1", "RS256"))
            .is_err()
    );
}
