//! registre's health-IT intake: FHIR AuditEvent (one per request, and batch
//! Bundles), syslog over TLS (1 and 8 senders), ITI-81 search — next to the
//! JSON API figure of the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use registre_intake::syslog::SyslogOptions;
use registre_intake::tls::{TlsOptions, server_config};
use registre_intake::{AppState, Metrics};
use registre_model::Limits;
use registre_store::{EmbeddedOptions, EmbeddedStore, Store};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

pub struct HealthResult {
    pub fhir_single_rate: f64,
    pub fhir_single_p50_ms: f64,
    pub fhir_single_p99_ms: f64,
    pub fhir_bundle_rate: f64,
    pub syslog_1_rate: f64,
    pub syslog_8_rate: f64,
    pub iti81_traces: usize,
    pub iti81_p50_ms: f64,
    pub iti81_p99_ms: f64,
}

fn event(i: usize, recorded: &str) -> Value {
    json!({
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
        "action": "R",
        "recorded": recorded,
        "outcome": "0",
        "agent": [{
            "who": {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": format!("8100{:08}", i % 50_000)}},
            "requestor": true,
            "network": {"address": "10.1.2.3", "type": "2"}
        }],
        "source": {"site": "hopital-nord", "observer": {"display": "MonDPI 4.2"}},
        "entity": [{
            "what": {"identifier": {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": patient(i)}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}
        }]
    })
}

fn patient(i: usize) -> String {
    format!("2{:014}", (i * 7919) % 100_000)
}

fn dicom(i: usize) -> Vec<u8> {
    let msg = format!(
        "<85>1 2026-11-28T15:42:07.123+01:00 dpi.hopital.test MonDPI 4242 IHE+RFC-3881 - \
         <?xml version=\"1.0\" encoding=\"UTF-8\"?><AuditMessage>\
         <EventIdentification EventActionCode=\"R\" EventDateTime=\"2026-11-28T15:42:07.123+01:00\" EventOutcomeIndicator=\"0\">\
         <EventID csd-code=\"110110\" codeSystemName=\"DCM\" originalText=\"Patient Record\"/></EventIdentification>\
         <ActiveParticipant UserID=\"8100{:08}\" UserIsRequestor=\"true\" NetworkAccessPointID=\"10.1.2.3\" NetworkAccessPointTypeCode=\"2\"/>\
         <AuditSourceIdentification AuditSourceID=\"MonDPI 4.2\"/>\
         <ParticipantObjectIdentification ParticipantObjectID=\"{}\" ParticipantObjectTypeCode=\"1\" ParticipantObjectTypeCodeRole=\"1\">\
         <ParticipantObjectIDTypeCode csd-code=\"2\"/></ParticipantObjectIdentification></AuditMessage>",
        i % 50_000,
        patient(i)
    );
    format!("{} {msg}", msg.len()).into_bytes()
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0)
}

fn stored(store: &EmbeddedStore) -> u64 {
    store.stats().iter().map(|s| s.size).sum()
}

/// `singles` one-event requests from 64 clients, `bundles` × 100 events in
/// batch Bundles from 2 clients, `syslog` DICOM messages over TLS from 1 then
/// 8 senders, then `iti81` searches at the size the store reached plus
/// `iti81_fill` traces loaded through the library.
pub async fn run(
    singles: usize,
    bundles: usize,
    syslog: usize,
    iti81_fill: usize,
    searches: usize,
) -> HealthResult {
    let dir = tempfile::tempdir_in(".").expect("tempdir");
    let store = Arc::new(
        EmbeddedStore::open(dir.path(), EmbeddedOptions::new(crate::classes())).expect("open"),
    );
    let state = Arc::new(AppState {
        store: store.clone(),
        classes: crate::classes(),
        limits: Limits::default(),
        auth: registre_intake::http::auth::Authenticator::admin_token("bench"),
        metrics: Arc::new(Metrics::default()),
        policy: registre_intake::empty_policy(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(registre_intake::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .expect("client");
    let recorded = jiff::Zoned::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string();

    // 1. FHIR, one AuditEvent per request, 64 clients.
    eprintln!("FHIR: {singles} AuditEvents, one per request, 64 clients…");
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..singles)
            .map(|i| event(i, &recorded).to_string())
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("http://{addr}/fhir/AuditEvent");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, url, bodies, next) =
            (client.clone(), url.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(b) = bodies.get(i) else { break };
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .bearer_auth("bench")
                    .header("content-type", "application/fhir+json")
                    .body(b.clone())
                    .send()
                    .await
                    .expect("post");
                assert_eq!(r.status(), 201);
                let _ = r.bytes().await;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
            lat
        }));
    }
    let mut single_lat = Vec::new();
    for t in tasks {
        single_lat.extend(t.await.expect("task"));
    }
    let fhir_single_rate = singles as f64 / start.elapsed().as_secs_f64();

    // 2. FHIR batch Bundles of 100, 2 clients.
    eprintln!("FHIR: {bundles} batch Bundles of 100 AuditEvents, 2 clients…");
    let bundle_bodies: Arc<Vec<String>> = Arc::new(
        (0..bundles)
            .map(|b| {
                let entries: Vec<Value> = (0..100)
                    .map(|k| json!({"request": {"method": "POST", "url": "AuditEvent"}, "resource": event(b * 100 + k, &recorded)}))
                    .collect();
                json!({"resourceType": "Bundle", "type": "batch", "entry": entries}).to_string()
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("http://{addr}/fhir");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (client, url, bodies, next) = (
            client.clone(),
            url.clone(),
            bundle_bodies.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(b) = bodies.get(i) else { break };
                let r = client
                    .post(&url)
                    .bearer_auth("bench")
                    .header("content-type", "application/fhir+json")
                    .body(b.clone())
                    .send()
                    .await
                    .expect("post");
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let fhir_bundle_rate = (bundles * 100) as f64 / start.elapsed().as_secs_f64();

    // 3. Syslog over TLS: a self-signed server certificate, 1 then 8 senders.
    let pki = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    std::fs::write(pki.path().join("s.pem"), cert.cert.pem()).expect("write");
    std::fs::write(pki.path().join("s.key"), cert.signing_key.serialize_pem()).expect("write");
    let config = server_config(&TlsOptions {
        cert: pki.path().join("s.pem"),
        key: pki.path().join("s.key"),
        client_ca: None,
        require_client_cert: false,
    })
    .expect("tls");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let syslog_addr = listener.local_addr().expect("addr");
    tokio::spawn(registre_intake::syslog::serve_tls(
        listener,
        config,
        state.clone(),
        SyslogOptions::default(),
        std::future::pending(),
    ));
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.cert.der().to_vec()))
        .expect("root");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    ));
    let mut syslog_rates = Vec::new();
    for senders in [1usize, 8] {
        eprintln!("syslog TLS: {syslog} DICOM audit messages from {senders} sender(s)…");
        let before = stored(&store);
        let per = syslog / senders;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for s in 0..senders {
            let connector = connector.clone();
            tasks.push(tokio::spawn(async move {
                let tcp = tokio::net::TcpStream::connect(syslog_addr)
                    .await
                    .expect("connect");
                let mut tls = connector
                    .connect(ServerName::try_from("localhost").expect("name"), tcp)
                    .await
                    .expect("handshake");
                let mut buf = Vec::with_capacity(1 << 20);
                for i in 0..per {
                    buf.extend_from_slice(&dicom(s * per + i));
                    if buf.len() > 256 * 1024 {
                        tls.write_all(&buf).await.expect("send");
                        buf.clear();
                    }
                }
                tls.write_all(&buf).await.expect("send");
                tls.flush().await.expect("flush");
                tls
            }));
        }
        let mut conns = Vec::new();
        for t in tasks {
            conns.push(t.await.expect("sender"));
        }
        let want = before + (per * senders) as u64;
        let deadline = Instant::now() + Duration::from_secs(600);
        while stored(&store) < want {
            assert!(Instant::now() < deadline, "syslog messages not all stored");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        syslog_rates.push((per * senders) as f64 / start.elapsed().as_secs_f64());
        drop(conns);
    }

    // 4. ITI-81 at scale: fill through the library with FHIR-shaped traces
    // (patients indexed), then search one patient over a day.
    eprintln!("ITI-81: loading {iti81_fill} traces, then {searches} searches…");
    let mut done = 0;
    while done < iti81_fill {
        let batch: Vec<registre_model::Trace> = (done..(done + 1000).min(iti81_fill))
            .map(|i| {
                let j = format!(
                    r#"{{"class":"applicative","occurred_at":"{recorded}","actor":{{"id":"8100{:08}","id_type":"rpps"}},"action":"consultation","target":{{"patient":{{"id":"{}","system":"urn:oid:1.2.250.1.213.1.4.8"}}}},"outcome":"success"}}"#,
                    i % 50_000,
                    patient(i)
                );
                registre_model::parse_trace(j.as_bytes(), &Limits::default()).expect("trace")
            })
            .collect();
        done += batch.len();
        store.append(batch).await.expect("append");
    }
    let total: u64 = stored(&store);
    let since = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(24))
        .expect("time")
        .to_string();
    let mut search_lat = Vec::with_capacity(searches);
    for k in 0..searches {
        let url = format!(
            "http://{addr}/fhir/AuditEvent?date=ge{since}&patient.identifier=urn:oid:1.2.250.1.213.1.4.8|{}&_count=50",
            patient(k * 13)
        );
        let t = Instant::now();
        let r = client
            .get(&url)
            .bearer_auth("bench")
            .send()
            .await
            .expect("search");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        let _ = r.bytes().await;
        search_lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    HealthResult {
        fhir_single_rate,
        fhir_single_p50_ms: pct(single_lat.clone(), 0.5),
        fhir_single_p99_ms: pct(single_lat, 0.99),
        fhir_bundle_rate,
        syslog_1_rate: syslog_rates[0],
        syslog_8_rate: syslog_rates[1],
        iti81_traces: total as usize,
        iti81_p50_ms: pct(search_lat.clone(), 0.5),
        iti81_p99_ms: pct(search_lat, 0.99),
    }
}
