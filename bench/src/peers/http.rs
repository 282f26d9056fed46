//! registre over HTTP: batches, one-trace requests, searches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use registre_intake::{AppState, Metrics};
use registre_model::Limits;
use registre_store::{EmbeddedOptions, EmbeddedStore};

pub struct HttpResult {
    pub batch_rate: f64,
    pub single_p50_ms: f64,
    pub single_p99_ms: f64,
    pub single_rate: f64,
    pub search_p50_ms: f64,
    pub search_p99_ms: f64,
}

pub async fn run(json: &[String], singles: usize, actors: &[String]) -> HttpResult {
    let dir = tempfile::tempdir_in(".").expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::new(crate::classes()))
        .expect("open store");
    let state = Arc::new(AppState {
        store: Arc::new(store),
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
        state,
        std::future::pending(),
    ));
    let url = format!("http://{addr}/v1/traces");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .expect("client");

    // Batches of 1000, two client tasks.
    eprintln!(
        "registre HTTP: {} traces in batches of 1000, 2 clients…",
        json.len()
    );
    let bodies: Vec<String> = json
        .chunks(1000)
        .map(|c| format!("[{}]", c.join(",")))
        .collect();
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (client, url, bodies, next) =
            (client.clone(), url.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(b) = bodies.get(i) else { break };
                let r = client
                    .post(&url)
                    .bearer_auth("bench")
                    .header("content-type", "application/json")
                    .body(b.clone())
                    .send()
                    .await
                    .expect("post");
                assert_eq!(r.status(), 201);
                let _ = r.bytes().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let batch_rate = json.len() as f64 / start.elapsed().as_secs_f64();

    // One trace per request, 64 concurrent clients.
    eprintln!("registre HTTP: {singles} single-trace requests from 64 clients…");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let singles_json: Arc<Vec<String>> = Arc::new(json.iter().take(singles).cloned().collect());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, url, js, next) = (
            client.clone(),
            url.clone(),
            singles_json.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(j) = js.get(i % js.len().max(1)).filter(|_| i < singles) else {
                    break;
                };
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .bearer_auth("bench")
                    .header("content-type", "application/json")
                    .body(j.clone())
                    .send()
                    .await
                    .expect("post");
                assert_eq!(r.status(), 201);
                let _ = r.bytes().await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat: Vec<Duration> = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    let single_rate = lat.len() as f64 / start.elapsed().as_secs_f64();
    let (single_p50_ms, single_p99_ms) = crate::percentiles(&mut lat);

    // Searches over HTTP.
    let mut lat = Vec::with_capacity(actors.len());
    for a in actors {
        let t = Instant::now();
        let r = client
            .get(&url)
            .bearer_auth("bench")
            .query(&[("actor", a.as_str()), ("limit", "50")])
            .send()
            .await
            .expect("search");
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        lat.push(t.elapsed());
    }
    let (search_p50_ms, search_p99_ms) = crate::percentiles(&mut lat);
    HttpResult {
        batch_rate,
        single_p50_ms,
        single_p99_ms,
        single_rate,
        search_p50_ms,
        search_p99_ms,
    }
}
