//! The Merkle log in PostgreSQL: each node's tree keeps only its right edge
//! in memory (`registre_log::tiled`, the same code as the embedded store),
//! caught up from `entries`; full tiles go to the `tiles` table as they
//! complete (any node may write one: a tile is a function of committed
//! commitments, so a second insert changes nothing), and every other node
//! is read from there. Checkpoints are issued under the log's lock.

use std::collections::HashMap;

use registre_log::checkpoint::Checkpoint;
use registre_log::merkle::{self, Hash, HashReader};
use registre_log::tile::TilePath;
use registre_log::tiled::{DEFAULT_CACHE_TILES, FullTile, TILE_WIDTH, TileKey, TiledTree};
use registre_store::{IntegrityError, SignedCheckpoint};
use tokio_postgres::GenericClient;

use crate::PgError;
use crate::store::{Inner, LogMeta, integrity};

/// This node's tree of one log.
pub(crate) type TreeGuard<'a> = tokio::sync::MappedMutexGuard<'a, TiledTree>;

impl Inner {
    /// Folds the committed commitments this node's tree lacks into it
    /// (restoring its edge from the tables first, once), and stores the
    /// full tiles that completes.
    pub(crate) async fn catch_up<'a, C: GenericClient + Sync>(
        &self,
        c: &C,
        log: &'a LogMeta,
    ) -> Result<TreeGuard<'a>, PgError> {
        let mut slot = log.tree.lock().await;
        if slot.is_none() {
            *slot = Some(restore(c, log).await?);
        }
        // Filled just above: `get_or_insert_with` never inserts here.
        let mut tree =
            tokio::sync::MutexGuard::map(slot, |t| t.get_or_insert_with(|| TiledTree::new(0)));
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
        if !tree.completed().is_empty() {
            store_tiles(c, log, tree.completed()).await?;
            tree.take_completed();
        }
        Ok(tree)
    }

    /// Runs `f` over this node's tree, caught up, with the full tiles it
    /// reads fetched first (one query).
    pub(crate) async fn read_tree<C, R>(
        &self,
        c: &C,
        log: &LogMeta,
        f: impl Fn(&dyn HashReader, u64) -> R,
    ) -> Result<R, PgError>
    where
        C: GenericClient + Sync,
    {
        let tree = self.catch_up(c, log).await?;
        let size = tree.size();
        let needed = tree.tiles_needed(|r| {
            f(r, size);
        });
        let fetched = fetch_tiles(c, log, &needed).await?;
        let reader = tree.reader(|k: TileKey| fetched.get(&k).cloned());
        Ok(f(&reader, size))
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
        let root = self
            .read_tree(tx, log, |r, have| {
                if size > have {
                    return None;
                }
                merkle::root(r, size).ok()
            })
            .await?
            .ok_or_else(|| {
                PgError::Corrupt(format!(
                    "log {} has {size} traces but fewer commitments",
                    log.name
                ))
            })?;
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
        match tile {
            TilePath::Hashes(t) => {
                let tl = t.tree_level();
                let start = t.index().saturating_mul(TILE_WIDTH);
                let end = start.saturating_add(u64::from(t.width()));
                self.read_tree(&*conn, log, |r, size| {
                    let nodes = if tl >= 64 { 0 } else { size >> tl };
                    if end > nodes {
                        return Err(IntegrityError::OutOfRange(format!(
                            "tile {t} is beyond the tree (size {size})"
                        )));
                    }
                    let mut out = Vec::with_capacity(32 * t.width() as usize);
                    for i in start..end {
                        let h = r.node(tl, i).ok_or_else(|| {
                            IntegrityError::OutOfRange(format!("tile {t} is not available"))
                        })?;
                        out.extend_from_slice(&h);
                    }
                    Ok(out)
                })
                .await
                .map_err(integrity)?
            }
            TilePath::Entries(b) => {
                let size = self.catch_up(&*conn, log).await.map_err(integrity)?.size();
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
        self.read_tree(&*conn, log, |r, have| {
            if size > have || index >= size {
                return Err(IntegrityError::OutOfRange(format!(
                    "index {index} is not in a tree of size {size} (log {name} holds {have})"
                )));
            }
            merkle::inclusion_proof(r, index, size)
                .map_err(|e| IntegrityError::OutOfRange(e.to_string()))
        })
        .await
        .map_err(integrity)?
    }

    pub(crate) async fn consistency_proof(
        &self,
        name: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, IntegrityError> {
        let log = self.log(name)?;
        let conn = self.conn().await.map_err(integrity)?;
        self.read_tree(&*conn, log, |r, have| {
            if to > have || from > to {
                return Err(IntegrityError::OutOfRange(format!(
                    "no consistency proof from size {from} to {to} (log {name} holds {have})"
                )));
            }
            merkle::consistency_proof(r, from, to)
                .map_err(|e| IntegrityError::OutOfRange(e.to_string()))
        })
        .await
        .map_err(integrity)?
    }
}

/// Rebuilds this node's tree edge from the tables: the stored tile counts,
/// then what `TiledTree::restore` reads (fetched in one pass: a first run
/// with placeholders names every tile and leaf range it needs).
async fn restore<C: GenericClient + Sync>(c: &C, log: &LogMeta) -> Result<TiledTree, PgError> {
    let size: i64 = c
        .query_one(
            "SELECT coalesce(max(idx) + 1, 0) FROM entries WHERE log = $1",
            &[&log.id],
        )
        .await?
        .get(0);
    let size = size as u64;
    let rows = c
        .query(
            "SELECT level, count(*) FROM tiles WHERE log = $1 GROUP BY level",
            &[&log.id],
        )
        .await?;
    let mut stored = vec![0u64; 8];
    for r in rows {
        let level: i16 = r.get(0);
        let n: i64 = r.get(1);
        if let Some(s) = stored.get_mut(level as usize) {
            *s = n as u64;
        }
    }
    let mut want_tiles: Vec<TileKey> = Vec::new();
    let mut want_leaves: Vec<(u64, u64)> = Vec::new();
    let _ = TiledTree::restore::<()>(
        size,
        &stored,
        0,
        &mut |k| {
            want_tiles.push(k);
            Ok(vec![[0u8; 32]; TILE_WIDTH as usize].into())
        },
        &mut |a, b| {
            want_leaves.push((a, b));
            Ok(vec![[0u8; 32]; (b - a) as usize])
        },
    );
    let tiles = fetch_tiles(c, log, &want_tiles).await?;
    let mut leaves: HashMap<u64, Hash> = HashMap::new();
    for (a, b) in want_leaves {
        let rows = c
            .query(
                "SELECT idx, commitment FROM entries WHERE log = $1 AND idx >= $2 AND idx < $3",
                &[&log.id, &(a as i64), &(b as i64)],
            )
            .await?;
        for r in rows {
            let idx: i64 = r.get(0);
            let cm: &[u8] = r.get(1);
            leaves.insert(idx as u64, merkle::leaf_hash(cm));
        }
    }
    let missing = |what: String| PgError::Corrupt(format!("log {}: {what} is missing", log.name));
    let mut tree = TiledTree::restore(
        size,
        &stored,
        DEFAULT_CACHE_TILES,
        &mut |k| {
            tiles
                .get(&k)
                .cloned()
                .ok_or_else(|| missing(format!("tile {} of level {}", k.index, k.level)))
        },
        &mut |a, b| {
            (a..b)
                .map(|i| {
                    leaves
                        .get(&i)
                        .copied()
                        .ok_or_else(|| missing(format!("commitment {i}")))
                })
                .collect()
        },
    )?;
    if !tree.completed().is_empty() {
        store_tiles(c, log, tree.completed()).await?;
        tree.take_completed();
    }
    Ok(tree)
}

/// Fetches full tiles by key, in one query.
async fn fetch_tiles<C: GenericClient + Sync>(
    c: &C,
    log: &LogMeta,
    keys: &[TileKey],
) -> Result<HashMap<TileKey, FullTile>, PgError> {
    let mut out = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let levels: Vec<i16> = keys.iter().map(|k| i16::from(k.level)).collect();
    let ns: Vec<i64> = keys.iter().map(|k| k.index as i64).collect();
    let rows = c
        .query(
            "SELECT t.level, t.n, t.hashes FROM tiles t \
             JOIN unnest($2::smallint[], $3::bigint[]) AS k(level, n) \
             ON t.level = k.level AND t.n = k.n WHERE t.log = $1",
            &[&log.id, &levels, &ns],
        )
        .await?;
    for r in rows {
        let level: i16 = r.get(0);
        let n: i64 = r.get(1);
        let raw: &[u8] = r.get(2);
        if raw.len() != 32 * TILE_WIDTH as usize {
            return Err(PgError::Corrupt(format!(
                "tile {n} of level {level} of log {} is not a full tile",
                log.name
            )));
        }
        let hashes: Vec<Hash> = registre_log::merkle::hashes(raw);
        out.insert(
            TileKey {
                level: level as u8,
                index: n as u64,
            },
            hashes.into(),
        );
    }
    Ok(out)
}

/// Stores full tiles (a tile another node stored already is left as is).
async fn store_tiles<C: GenericClient + Sync>(
    c: &C,
    log: &LogMeta,
    tiles: &[(TileKey, FullTile)],
) -> Result<(), PgError> {
    let levels: Vec<i16> = tiles.iter().map(|(k, _)| i16::from(k.level)).collect();
    let ns: Vec<i64> = tiles.iter().map(|(k, _)| k.index as i64).collect();
    let hashes: Vec<Vec<u8>> = tiles
        .iter()
        .map(|(_, t)| t.iter().flatten().copied().collect())
        .collect();
    c.execute(
        "INSERT INTO tiles (log, level, n, hashes) \
         SELECT $1, * FROM unnest($2::smallint[], $3::bigint[], $4::bytea[]) \
         ON CONFLICT DO NOTHING",
        &[&log.id, &levels, &ns, &hashes],
    )
    .await?;
    Ok(())
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
