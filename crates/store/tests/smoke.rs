//! Append, search, reopen: the embedded store's basic contract.

// Test code: helper functions outside #[test] are linted too (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]
use registre_model::{ClassName, Limits, parse_trace};
use registre_store::{EmbeddedOptions, EmbeddedStore, Query, Store};

fn classes() -> Vec<ClassName> {
    ["mss", "technique", "applicative"]
        .iter()
        .map(|c| ClassName::new(c).expect("valid"))
        .collect()
}

fn trace(class: &str, actor: &str, mailbox: &str) -> registre_model::Trace {
    let j = format!(
        r#"{{"class":"{class}","occurred_at":"2026-11-28T15:42:07.123+01:00","actor":{{"id":"{actor}"}},"action":"consultation","target":{{"mailbox":"{mailbox}"}}}}"#
    );
    parse_trace(j.as_bytes(), &Limits::default()).expect("valid trace")
}

#[tokio::test]
async fn append_search_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::new(classes())).expect("open");
        let mut batch = Vec::new();
        for i in 0..1000 {
            batch.push(trace(
                if i % 3 == 0 { "mss" } else { "applicative" },
                &format!("actor{}", i % 10),
                &format!("box{}@h.fr", i % 7),
            ));
        }
        let receipts = store.append(batch).await.expect("append");
        assert_eq!(receipts.len(), 1000);
        assert_eq!(receipts[0].log.as_str(), "mss");
        assert_eq!(receipts[0].index, 0);
        assert_eq!(receipts[3].index, 1);
        let page = store
            .search(Query {
                actor: Some("actor3".into()),
                limit: 1000,
                ..Query::default()
            })
            .await
            .expect("search");
        assert_eq!(page.traces.len(), 100);
        assert!(page.next.is_none());
        // A second process cannot open the same directory.
        let err = EmbeddedStore::open(dir.path(), EmbeddedOptions::new(classes()))
            .err()
            .expect("locked");
        assert!(err.to_string().contains("in use"), "{err}");
    }
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::new(classes())).expect("reopen");
    let mut seen = 0;
    let mut cursor = None;
    loop {
        let page = store
            .search(Query {
                mailbox: Some("BOX2@h.fr".into()),
                limit: 7,
                cursor,
                ..Query::default()
            })
            .await
            .expect("search");
        seen += page.traces.len();
        for t in &page.traces {
            assert_eq!(t.trace.mailbox(), Some("box2@h.fr"));
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, (0..1000).filter(|i| i % 7 == 2).count());
    let more = store
        .append(vec![trace("mss", "x", "y")])
        .await
        .expect("append");
    assert_eq!(more[0].index, 334);
}

/// A filter that rarely matches must not read the whole log in one request:
/// the search stops after its scan budget with a cursor, and paging on finds
/// every match exactly once.
#[tokio::test]
async fn sparse_filters_page_within_the_scan_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::new(classes())).expect("open");
    let mut batch = Vec::new();
    for i in 0..50_000 {
        // Two populations that never meet: (actor a, mailbox x) and
        // (actor b, mailbox y); actor "rare" on 3 traces only, far apart.
        let (actor, mailbox) = match (i % 20_000 == 7, i % 2 == 0) {
            (true, _) => ("rare", "x@h.fr"),
            (false, true) => ("a", "x@h.fr"),
            (false, false) => ("b", "y@h.fr"),
        };
        batch.push(trace("mss", actor, mailbox));
        if batch.len() == 10_000 {
            store
                .append(std::mem::take(&mut batch))
                .await
                .expect("append");
        }
    }
    // actor=a AND mailbox=y: both posting lists hold ~25,000 traces and
    // never meet, the expensive shape.
    let mut found = 0;
    let mut pages = 0;
    let mut cursor = None;
    loop {
        let page = store
            .search(Query {
                actor: Some("a".into()),
                mailbox: Some("y@h.fr".into()),
                limit: 10,
                cursor,
                ..Query::default()
            })
            .await
            .expect("search");
        pages += 1;
        found += page.traces.len();
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(pages < 100, "paging does not end");
    }
    // Nothing matches, but the scan was cut into bounded pages rather than
    // one 25,000-record read.
    assert_eq!(found, 0);
    assert!(
        pages >= 2,
        "the scan budget was not applied ({pages} pages)"
    );
    let mut seen = 0;
    let mut cursor = None;
    loop {
        let page = store
            .search(Query {
                actor: Some("rare".into()),
                limit: 1,
                cursor,
                ..Query::default()
            })
            .await
            .expect("search");
        seen += page.traces.len();
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, 3);
}
