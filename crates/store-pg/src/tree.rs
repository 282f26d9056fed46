//! The Merkle log in PostgreSQL: each node's in-memory tree caught up from
//! `entries`; checkpoints (issued under the log's lock), tiles, proofs.

use registre_log::checkpoint::Checkpoint;
use registre_log::merkle::{self, Hash, HashReader, MemoryTree};
use registre_log::tile::TilePath;
use registre_store::{IntegrityError, SignedCheckpoint};
use tokio_postgres::GenericClient;

use crate::PgError;
use crate::store::{Inner, LogMeta, integrity};

/// Hashes in a full tile.
const TILE_WIDTH: u64 = 256;

impl Inner {
    /// Folds the committed commitments this node's tree lacks into it.
    pub(crate) async fn catch_up<'a, C: GenericClient + Sync>(
        &self,
        c: &C,
        log: &'a LogMeta,
    ) -> Result<tokio::sync::MutexGuard<'a, MemoryTree>, PgError> {
        let mut tree = log.tree.lock().await;
        let from = tree.size() as i64;
        let rows = c
            .query(
                "SELECT idx, commitment FROM entries WHERE log = $1 AND idx >= $2 ORDER BY idx",
                &[&log.id, &from],
            )
            .await?;
        for r in rows {
            let idx: i64 = r.get(0);
            let c: &[u8] = r.get(1);
            if idx as u64 != tree.size() || c.len() != 32 {
                return Err(PgError::Corrupt(format!(
                    "commitment {idx} of log {} is out of order or malformed",
                    log.name
                )));
            }
            tree.push(merkle::leaf_hash(c));
        }
        Ok(tree)
    }

    /// The latest checkpoint; with `fresh`, a new one first if the log grew.
    pub(crate) async fn checkpoint(
        &self,
        name: &str,
        fresh: bool,
    ) -> Result<Option<SignedCheckpoint>, PgError> {
        let log = self
            .logs
            .get(name)
            .ok_or_else(|| PgError::Corrupt(format!("unknown log {name}")))?;
        let mut conn = self.conn().await?;
        if !fresh {
            return latest(&*conn, log).await;
        }
        let tx = conn.transaction().await?;
        let (size, _, _) = self.lock_log(&tx, log).await?;
        let cp = self.checkpoint_locked(&tx, log, size).await?;
        tx.commit().await?;
        Ok(cp)
    }

    /// Issues a checkpoint of the log's `size` traces unless the latest
    /// covers them, writing the full tiles it completes first; the caller's
    /// transaction holds the log's lock.
    pub(crate) async fn checkpoint_locked(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        log: &LogMeta,
        size: u64,
    ) -> Result<Option<SignedCheckpoint>, PgError> {
        let last = latest(tx, log).await?;
        if size == 0 || last.as_ref().is_some_and(|c| c.size >= size) {
            return Ok(last);
        }
        let tree = self.catch_up(tx, log).await?;
        let root = tree.root_at(size).ok_or_else(|| {
            PgError::Corrupt(format!(
                "log {} has {size} traces but {} commitments",
                log.name,
                tree.size()
            ))
        })?;
        // Full tiles completed since the last ones written, every level.
        let written = tx
            .query(
                "SELECT level, count(*) FROM tiles WHERE log = $1 GROUP BY level",
                &[&log.id],
            )
            .await?;
        let mut level = 0u8;
        loop {
            let tree_level = 8 * u32::from(level);
            let nodes = if tree_level >= 64 {
                0
            } else {
                size >> tree_level
            };
            let full = nodes / TILE_WIDTH;
            if full == 0 {
                break;
            }
            let have = written
                .iter()
                .find(|r| r.get::<_, i16>(0) == i16::from(level))
                .map_or(0, |r| r.get::<_, i64>(1) as u64);
            for n in have..full {
                let mut hashes = Vec::with_capacity(32 * TILE_WIDTH as usize);
                for i in 0..TILE_WIDTH {
                    let h = tree
                        .node(tree_level, n * TILE_WIDTH + i)
                        .ok_or_else(|| PgError::Corrupt("a tile hash is not in the tree".into()))?;
                    hashes.extend_from_slice(&h);
                }
                tx.execute(
                    "INSERT INTO tiles (log, level, n, hashes) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                    &[&log.id, &i16::from(level), &(n as i64), &hashes],
                )
                .await?;
            }
            level += 1;
        }
        drop(tree);
        let body = Checkpoint::new(&log.origin, size, root)
            .map_err(|e| PgError::Corrupt(e.to_string()))?
            .body();
        let note = self
            .signer
            .sign(&body)
            .map_err(|e| PgError::Crypto(e.to_string()))?;
        tx.execute(
            "INSERT INTO checkpoints (log, size, root, note) VALUES ($1, $2, $3, $4)",
            &[&log.id, &(size as i64), &root.as_slice(), &note],
        )
        .await?;
        Ok(Some(SignedCheckpoint { size, root, note }))
    }

    pub(crate) async fn checkpoint_history(
        &self,
        name: &str,
    ) -> Result<Vec<SignedCheckpoint>, IntegrityError> {
        let log = self.log(name)?;
        let conn = self.conn().await.map_err(integrity)?;
        let rows = conn
            .query(
                "SELECT size, root, note FROM checkpoints WHERE log = $1 ORDER BY size",
                &[&log.id],
            )
            .await
            .map_err(|e| integrity(e.into()))?;
        rows.iter().map(|r| signed(r).map_err(integrity)).collect()
    }

    pub(crate) async fn tile(&self, name: &str, tile: TilePath) -> Result<Vec<u8>, IntegrityError> {
        let log = self.log(name)?;
        let conn = self.conn().await.map_err(integrity)?;
        let tree = self.catch_up(&*conn, log).await.map_err(integrity)?;
        let size = tree.size();
        match tile {
            TilePath::Hashes(t) => {
                let tl = t.tree_level();
                let nodes = if tl >= 64 { 0 } else { size >> tl };
                let start = t.index().saturating_mul(TILE_WIDTH);
                let end = start.saturating_add(u64::from(t.width()));
                if end > nodes {
                    return Err(IntegrityError::OutOfRange(format!(
                        "tile {t} is beyond the tree (size {size})"
                    )));
                }
                let mut out = Vec::with_capacity(32 * t.width() as usize);
                for i in start..end {
                    let h = tree.node(tl, i).ok_or_else(|| {
                        IntegrityError::OutOfRange(format!("tile {t} is not available"))
                    })?;
                    out.extend_from_slice(&h);
                }
                Ok(out)
            }
            TilePath::Entries(b) => {
                drop(tree);
                let start = b.index().saturating_mul(TILE_WIDTH);
                let end = start.saturating_add(u64::from(b.width()));
                if end > size {
                    return Err(IntegrityError::OutOfRange(format!(
                        "entry bundle {b} is beyond the log (size {size})"
                    )));
                }
                let rows = conn
                    .query(
                        "SELECT commitment FROM entries WHERE log = $1 AND idx >= $2 \
                         AND idx < $3 ORDER BY idx",
                        &[&log.id, &(start as i64), &(end as i64)],
                    )
                    .await
                    .map_err(|e| integrity(e.into()))?;
                let entries: Vec<Vec<u8>> = rows.iter().map(|r| r.get(0)).collect();
                if entries.len() as u64 != end - start {
                    return Err(integrity(PgError::Corrupt(format!(
                        "entry bundle {b}: commitments are missing"
                    ))));
                }
                registre_log::tile::encode_bundle(&entries)
                    .map_err(|e| IntegrityError::OutOfRange(e.to_string()))
            }
        }
    }

    pub(crate) async fn inclusion_proof(
        &self,
        name: &str,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, IntegrityError> {
        let log = self.log(name)?;
        let conn = self.conn().await.map_err(integrity)?;
        let tree = self.catch_up(&*conn, log).await.map_err(integrity)?;
        if size > tree.size() || index >= size {
            return Err(IntegrityError::OutOfRange(format!(
                "index {index} is not in a tree of size {size} (log {name} holds {})",
                tree.size()
            )));
        }
        merkle::inclusion_proof(&*tree, index, size)
            .map_err(|e| IntegrityError::OutOfRange(e.to_string()))
    }

    pub(crate) async fn consistency_proof(
        &self,
        name: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, IntegrityError> {
        let log = self.log(name)?;
        let conn = self.conn().await.map_err(integrity)?;
        let tree = self.catch_up(&*conn, log).await.map_err(integrity)?;
        if to > tree.size() || from > to {
            return Err(IntegrityError::OutOfRange(format!(
                "no consistency proof from size {from} to {to} (log {name} holds {})",
                tree.size()
            )));
        }
        merkle::consistency_proof(&*tree, from, to)
            .map_err(|e| IntegrityError::OutOfRange(e.to_string()))
    }
}

async fn latest<C: GenericClient + Sync>(
    c: &C,
    log: &LogMeta,
) -> Result<Option<SignedCheckpoint>, PgError> {
    let row = c
        .query_opt(
            "SELECT size, root, note FROM checkpoints WHERE log = $1 ORDER BY size DESC LIMIT 1",
            &[&log.id],
        )
        .await?;
    row.as_ref().map(signed).transpose()
}

fn signed(r: &tokio_postgres::Row) -> Result<SignedCheckpoint, PgError> {
    let size: i64 = r.get(0);
    let root: &[u8] = r.get(1);
    let root: Hash = root
        .try_into()
        .map_err(|_| PgError::Corrupt("a checkpoint root is not 32 bytes".into()))?;
    Ok(SignedCheckpoint {
        size: size as u64,
        root,
        note: r.get(2),
    })
}
