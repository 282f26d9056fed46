//! Sealed segments are searched through their index files: the same
//! answers as before they were sealed, rebuilt when missing or damaged,
//! and checked by `verify`.

// Test code: helper functions outside #[test] are linted too (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::path::{Path, PathBuf};
use std::sync::Arc;

use registre_log::note::Verifier;
use registre_model::{ClassName, Limits, Trace, parse_trace};
use registre_store::crypto::{MasterKey, default_master_path};
use registre_store::{EmbeddedOptions, EmbeddedStore, Query, Store};

fn classes() -> Vec<ClassName> {
    ["mss", "technique", "applicative"]
        .iter()
        .map(|c| ClassName::new(c).expect("valid"))
        .collect()
}

fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        // A new segment every few groups.
        max_segment_bytes: 16 * 1024,
        ..EmbeddedOptions::new(classes())
    }
}

fn trace(i: usize) -> Trace {
    let j = format!(
        r#"{{"class":"mss","occurred_at":"2026-11-28T15:42:07.123+01:00","actor":{{"id":"actor-{}"}},"action":"{}","target":{{"mailbox":"Box-{}@h.fr","patient":{{"id":"p-{}"}}}},"request":"r{i}"}}"#,
        i % 7,
        ["consultation", "envoi", "suppression"][i % 3],
        i % 5,
        i % 11,
    );
    parse_trace(j.as_bytes(), &Limits::default()).expect("valid trace")
}

fn queries() -> Vec<Query> {
    let base = Query {
        class: Some(ClassName::new("mss").expect("class")),
        limit: 7,
        ..Query::default()
    };
    vec![
        base.clone(),
        Query {
            actor: Some("actor-3".into()),
            ..base.clone()
        },
        Query {
            patient: Some("p-10".into()),
            ..base.clone()
        },
        Query {
            mailbox: Some("box-2@H.FR".into()),
            action: Some(registre_model::Action::parse("envoi").expect("action")),
            ..base.clone()
        },
        Query {
            actor: Some("nobody".into()),
            ..base
        },
    ]
}

/// Every page of every query, as (index, actor) lists.
async fn answers(store: &EmbeddedStore) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    for q in queries() {
        let mut q = q;
        let mut got = Vec::new();
        loop {
            let page = store.search(q.clone()).await.expect("search");
            got.extend(page.traces.iter().map(|r| r.trace.index));
            match page.next {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
        }
        out.push(got);
    }
    out
}

fn idx_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("logs/mss"))
        .expect("read_dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    v.sort();
    v
}

fn verify(dir: &Path) -> registre_store::Report {
    let signer = registre_store::keys::load(dir).expect("checkpoint key");
    let v: Verifier = signer.verifier();
    let master = MasterKey::read(&default_master_path(dir)).expect("master key");
    registre_store::verify_data_dir(dir, &[v], Some(&master), &mut |_| {}).expect("verify")
}

#[tokio::test]
async fn sealed_indexes_answer_as_the_live_ones_and_are_verified() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let store = Arc::new(EmbeddedStore::open(dir, options()).expect("open"));
    // Answers taken while each segment is live, group after group.
    for g in 0..30 {
        store
            .append((g * 20..g * 20 + 20).map(trace).collect())
            .await
            .expect("append");
    }
    let before = answers(&store).await;
    assert_eq!(before[0].len(), 600);
    assert_eq!(before[1].len(), 600 / 7 + 1);
    store.checkpoint_all().expect("checkpoint");
    drop(store);
    let sealed = idx_files(dir);
    assert!(sealed.len() >= 5, "{} sealed segments", sealed.len());

    // Reopened: sealed segments through their index files, same answers.
    let store = EmbeddedStore::open(dir, options()).expect("reopen");
    assert_eq!(answers(&store).await, before);
    drop(store);
    let r = verify(dir);
    assert!(r.ok(), "{:#?}", r.failures);
    assert_eq!(
        r.logs.iter().find(|l| l.log == "mss").map(|l| l.indexes),
        Some(sealed.len() as u64)
    );

    // An index file altered, its checksum left: verify names it.
    let victim = &sealed[2];
    let good = std::fs::read(victim).expect("read");
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 10] ^= 0x01;
    std::fs::write(victim, &bad).expect("write");
    let r = verify(dir);
    assert!(
        r.failures
            .iter()
            .any(|f| f.what.contains("index file checksum mismatch")),
        "{:#?}",
        r.failures
    );
    // Altered with a fixed checksum: verify still compares it with the
    // records.
    let body = n - 4;
    let crc = crc32c::crc32c(&bad[..body]);
    bad[body..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(victim, &bad).expect("write");
    let r = verify(dir);
    assert!(
        r.failures.iter().any(|f| f
            .what
            .contains("index file does not match the segment's records")),
        "{:#?}",
        r.failures
    );

    // Removed (or cut short): the next open rebuilds it from the records.
    std::fs::remove_file(victim).expect("remove");
    std::fs::write(&sealed[3], b"RGIDX").expect("cut short");
    let store = EmbeddedStore::open(dir, options()).expect("reopen");
    assert_eq!(answers(&store).await, before);
    drop(store);
    assert_eq!(std::fs::read(victim).expect("rebuilt"), good);
    let r = verify(dir);
    assert!(r.ok(), "{:#?}", r.failures);
}
