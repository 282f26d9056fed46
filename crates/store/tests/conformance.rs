//! The `Store` conformance suite on the embedded store (the same suite runs
//! on PostgreSQL in `crates/store-pg/tests/conformance.rs`).

// Test code: helper functions outside #[test] are linted too (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::path::{Path, PathBuf};
use std::sync::Arc;

use registre_store::clock::ManualClock;
use registre_store::conformance::{Harness, classes};
use registre_store::{BoxFuture, EmbeddedOptions, EmbeddedStore};

struct Embedded {
    dir: tempfile::TempDir,
}

async fn harness() -> Option<Embedded> {
    Some(Embedded {
        dir: tempfile::tempdir().expect("tempdir"),
    })
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

impl Harness for Embedded {
    type S = EmbeddedStore;

    fn open(&self, clock: Arc<ManualClock>) -> BoxFuture<'_, EmbeddedStore> {
        Box::pin(async move {
            let opts = EmbeddedOptions {
                clock,
                ..EmbeddedOptions::new(classes())
            };
            let dir = self.dir.path().to_owned();
            tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir, opts))
                .await
                .expect("task")
                .expect("open")
        })
    }

    fn at_rest(&self) -> BoxFuture<'_, Vec<(String, Vec<u8>)>> {
        Box::pin(async move {
            files_under(self.dir.path())
                .into_iter()
                .map(|p| {
                    let b = std::fs::read(&p).expect("read");
                    (p.display().to_string(), b)
                })
                .collect()
        })
    }

    fn finish(self) -> BoxFuture<'static, ()> {
        Box::pin(async move { drop(self.dir) })
    }
}

registre_store::conformance_tests!(harness);
