//! Acknowledged means durable: the real binary is `SIGKILL`ed at random
//! moments while several clients send traces; after each restart every trace
//! that was acknowledged with a 201 must be found by search, exactly once,
//! and everything found must be a whole trace that some client sent.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, free_port, trace_json};

const ROUNDS: usize = 20;
const CLIENTS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let sent: Arc<Mutex<HashSet<String>>> = Arc::default();
    let client = reqwest::Client::new();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };

    for round in 0..ROUNDS {
        let port = free_port();
        let mut server = Server::start(&data, port);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (client, url, token) = (client.clone(), server.url.clone(), server.token.clone());
            let (acked, sent, stop) = (acked.clone(), sent.clone(), stop.clone());
            let batch = 1 + (c * 7 + round) % 40;
            tasks.push(tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut tags = Vec::with_capacity(batch);
                    let mut body = String::from("[");
                    for i in 0..batch {
                        let tag = format!("r{round}c{c}n{n}");
                        n += 1;
                        if i > 0 {
                            body.push(',');
                        }
                        let class = if n.is_multiple_of(3) {
                            "applicative"
                        } else {
                            "mss"
                        };
                        body.push_str(&trace_json(&format!("actor{c}"), &tag, class));
                        tags.push(tag);
                    }
                    body.push(']');
                    sent.lock().expect("lock").extend(tags.iter().cloned());
                    let resp = client
                        .post(format!("{url}/v1/traces"))
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status() == 201 => {
                            let v: serde_json::Value = r.json().await.expect("201 body");
                            let accepted = v["accepted"].as_array().map_or(0, Vec::len);
                            assert_eq!(accepted, tags.len(), "one receipt per trace");
                            acked.lock().expect("lock").extend(tags);
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => break, // the server died under us
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(30 + rand(300))).await;
        server.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            t.await.expect("client task");
        }
    }

    let server = Server::start(&data, free_port());
    let acked = acked.lock().expect("lock").clone();
    let sent = sent.lock().expect("lock").clone();
    assert!(
        acked.len() > ROUNDS * 10,
        "too few traces acknowledged: {}",
        acked.len()
    );
    let mut found: HashMap<String, usize> = HashMap::new();
    let mut indexes: HashMap<String, Vec<u64>> = HashMap::new();
    for c in 0..CLIENTS {
        let mut cursor: Option<String> = None;
        loop {
            let mut q = vec![("actor", format!("actor{c}")), ("limit", "1000".into())];
            if let Some(cur) = &cursor {
                q.push(("cursor", cur.clone()));
            }
            let v: serde_json::Value = client
                .get(format!("{}/v1/traces", server.url))
                .bearer_auth(&server.token)
                .query(&q)
                .send()
                .await
                .expect("search")
                .json()
                .await
                .expect("page");
            for t in v["traces"].as_array().expect("traces") {
                let tag = t["target"]["uids"]
                    .as_str()
                    .expect("whole trace")
                    .to_owned();
                assert!(sent.contains(&tag), "found a trace nobody sent: {tag}");
                assert_eq!(t["actor"]["id"], format!("actor{c}"));
                assert_eq!(t["response"]["text"], "Fetch completed");
                *found.entry(tag).or_default() += 1;
                indexes
                    .entry(t["log"].as_str().expect("log").to_owned())
                    .or_default()
                    .push(t["index"].as_u64().expect("index"));
            }
            match v["next"].as_str() {
                Some(n) => cursor = Some(n.to_owned()),
                None => break,
            }
        }
    }
    let missing: Vec<&String> = acked.iter().filter(|t| !found.contains_key(*t)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged traces lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let dups: Vec<_> = found.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "traces found twice: {dups:?}");
    for (log, mut ix) in indexes {
        ix.sort_unstable();
        let dense = ix.iter().enumerate().all(|(i, x)| i as u64 == *x);
        assert!(dense, "log {log} has holes in its indexes");
    }
    eprintln!(
        "{ROUNDS} SIGKILL rounds: {} traces acknowledged, {} found after recovery",
        acked.len(),
        found.len()
    );
}
