//! `PgStore`: open, append (group commit), holds, purge, key rotation.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use registre_log::merkle::Hash;
use registre_log::note::Signer;
use registre_log::tile::TilePath;
use registre_log::tiled::TiledTree;
use registre_model::{ClassName, StoredTrace, Trace, format_received_at};
use registre_store::at_rest::{self, Key, Purged};
use registre_store::clock::{Clock, SystemClock};
use registre_store::crypto::{self, MasterKey, NONCE_LEN, SegmentKeys};
use registre_store::{
    AppendError, BoxFuture, Hold, HoldError, IntegrityError, LogInfo, LogPurge, LogStats, Page,
    PurgeError, PurgeReport, PurgeRequest, Query, Receipt, SearchError, SignedCheckpoint, Store,
};
use sha2::Digest;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::GenericClient;
use zeroize::Zeroizing;

use crate::pool::{Conn, Pool};
use crate::schema::{self, SETUP_LOCK};
use crate::{PgError, PgOpenError};

/// How a PostgreSQL store is run.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/db?sslmode=require&sslrootcert=/ca.pem`.
    pub url: String,
    /// The PostgreSQL schema holding this journal (created if absent).
    pub schema: String,
    pub classes: Vec<ClassName>,
    /// Partitions hold this many seconds of receptions (UTC-aligned;
    /// default one day): purge drops whole partitions.
    pub partition_period_secs: u64,
    /// Per-class periods in seconds, overriding `partition_period_secs`.
    pub partition_periods: BTreeMap<String, u64>,
    /// Most traces one transaction takes.
    pub max_group: usize,
    /// Checkpoint origins are `<instance>/registre/<class>`.
    pub instance: String,
    pub checkpoint_interval: Duration,
    /// The checkpoint signer; by default the one stored in the database
    /// (sealed with the master key; created by the first node).
    pub signer: Option<Arc<Signer>>,
    /// Wraps every data key; never sent to PostgreSQL.
    pub master_key: Arc<MasterKey>,
    pub clock: Arc<dyn Clock>,
    /// Most connections this node opens.
    pub pool_size: usize,
    /// CA certificates (PEM) for `sslmode=require`; `sslrootcert=` in the
    /// URL does the same.
    pub tls_root_cert: Option<PathBuf>,
    /// Used when the URL gives no `connect_timeout`.
    pub connect_timeout: Duration,
}

impl PgOptions {
    pub fn new(url: &str, classes: Vec<ClassName>, master_key: Arc<MasterKey>) -> PgOptions {
        PgOptions {
            url: url.to_owned(),
            schema: "registre".to_owned(),
            classes,
            partition_period_secs: 86_400,
            partition_periods: BTreeMap::new(),
            max_group: 10_000,
            instance: "localhost".to_owned(),
            checkpoint_interval: Duration::from_secs(10),
            signer: None,
            master_key,
            clock: Arc::new(SystemClock),
            pool_size: 8,
            tls_root_cert: None,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// One log (class) as this node knows it.
pub(crate) struct LogMeta {
    pub name: ClassName,
    pub id: i16,
    pub origin: String,
    pub period_micros: i64,
    /// This node's copy of the Merkle tree's right edge (restored from the
    /// tables on first use), caught up from `entries`.
    pub tree: tokio::sync::Mutex<Option<TiledTree>>,
    pub history_key: Arc<SegmentKeys>,
}

pub(crate) struct Inner {
    pub pool: Arc<Pool>,
    /// First half of every advisory lock key: a hash of the schema.
    pub ns: i32,
    pub master: Arc<MasterKey>,
    pub signer: Arc<Signer>,
    pub clock: Arc<dyn Clock>,
    pub logs: BTreeMap<String, LogMeta>,
    /// Unwrapped keys by label (labels are never reused).
    keys: Mutex<HashMap<String, Arc<SegmentKeys>>>,
    max_group: usize,
}

type Reply = oneshot::Sender<Result<Vec<(usize, Receipt)>, AppendError>>;

struct Request {
    traces: Vec<(usize, Trace)>,
    reply: Reply,
}

/// The PostgreSQL store: one per node; any number of nodes per database.
pub struct PgStore {
    inner: Arc<Inner>,
    writers: BTreeMap<String, mpsc::Sender<Request>>,
    checkpointer: tokio::task::JoinHandle<()>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The writers end once their queues are drained (senders dropped).
        self.checkpointer.abort();
    }
}

pub(crate) const HOLDS_LABEL: &str = "registre holds v1";
pub(crate) const SIGNER_LABEL: &str = "registre checkpoint key v1";

pub(crate) fn lock_ns(schema: &str) -> i32 {
    let d = sha2::Sha256::digest(format!("registre advisory v1\0{schema}").as_bytes());
    i32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// The blind values of a record, by column.
pub(crate) struct Blinds {
    pub actor: i64,
    pub action: i64,
    pub mailbox: Option<i64>,
    pub patient: Option<i64>,
}

pub(crate) fn blinds(keys: &SegmentKeys, t: &StoredTrace) -> Blinds {
    let mut b = Blinds {
        actor: 0,
        action: 0,
        mailbox: None,
        patient: None,
    };
    // Bit-for-bit casts: PostgreSQL has no unsigned 64-bit integer.
    for (k, h) in at_rest::keys_of(keys, t).into_iter().flatten() {
        match k {
            Key::Actor => b.actor = h as i64,
            Key::Action => b.action = h as i64,
            Key::Mailbox => b.mailbox = Some(h as i64),
            Key::Patient => b.patient = Some(h as i64),
        }
    }
    b
}

impl PgStore {
    /// Connects, migrates the schema, checks the master key, registers the
    /// classes and starts this node's writers and checkpointer. Must run
    /// inside a Tokio runtime.
    pub async fn open(opts: PgOptions) -> Result<PgStore, PgOpenError> {
        if !schema::valid_schema(&opts.schema) {
            return Err(PgOpenError::Config(format!(
                "schema `{}` is not a plain lowercase identifier",
                opts.schema
            )));
        }
        let pool = Pool::new(
            &opts.url,
            opts.tls_root_cert.clone(),
            &opts.schema,
            opts.pool_size,
            opts.connect_timeout,
        )?;
        let ns = lock_ns(&opts.schema);
        let master = opts.master_key.clone();
        let mut conn = pool.get().await.map_err(PgOpenError::from)?;
        let tx = conn.transaction().await.map_err(PgError::from)?;
        tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&ns, &SETUP_LOCK])
            .await
            .map_err(PgError::from)?;
        schema::migrate(&tx, &opts.schema).await?;

        // The master key: the database records its id, never the key.
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('master_id', $1) ON CONFLICT DO NOTHING",
            &[&master.id().into_bytes()],
        )
        .await
        .map_err(PgError::from)?;
        let recorded: Vec<u8> = tx
            .query_one("SELECT value FROM meta WHERE key = 'master_id'", &[])
            .await
            .map_err(PgError::from)?
            .get(0);
        if recorded != master.id().into_bytes() {
            return Err(PgOpenError::Key(format!(
                "the master key (id {}) is not the key of this journal (id {}, recorded in \
                 PostgreSQL); give the right key. Nothing was touched.",
                master.id(),
                String::from_utf8_lossy(&recorded)
            )));
        }
        let empty_holds = master
            .seal_blob(HOLDS_LABEL, b"[]")
            .map_err(PgError::from)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('holds', $1) ON CONFLICT DO NOTHING",
            &[&empty_holds],
        )
        .await
        .map_err(PgError::from)?;

        let signer = match &opts.signer {
            Some(s) => s.clone(),
            None => Arc::new(load_signer(&tx, &master, &opts.instance).await?),
        };

        let mut logs = BTreeMap::new();
        for class in &opts.classes {
            let meta = register_log(&tx, &master, class, &opts).await?;
            logs.insert(class.as_str().to_owned(), meta);
        }
        tx.commit().await.map_err(PgError::from)?;
        drop(conn);

        let inner = Arc::new(Inner {
            pool,
            ns,
            master,
            signer,
            clock: opts.clock.clone(),
            logs,
            keys: Mutex::new(HashMap::new()),
            max_group: opts.max_group.max(1),
        });
        let mut writers = BTreeMap::new();
        for name in inner.logs.keys() {
            let (tx, rx) = mpsc::channel(1024);
            tokio::spawn(writer(inner.clone(), name.clone(), rx));
            writers.insert(name.clone(), tx);
        }
        let checkpointer = tokio::spawn(checkpointer(
            Arc::downgrade(&inner),
            opts.checkpoint_interval,
        ));
        Ok(PgStore {
            inner,
            writers,
            checkpointer,
        })
    }

    /// Issues a checkpoint of every log that grew since its last one.
    pub async fn checkpoint_all(&self) -> Result<(), IntegrityError> {
        for log in self.inner.logs.keys() {
            self.inner.checkpoint(log, true).await.map_err(integrity)?;
        }
        Ok(())
    }

    async fn append_inner(&self, traces: Vec<Trace>) -> Result<Vec<Receipt>, AppendError> {
        let total = traces.len();
        let mut per_log: BTreeMap<&str, Vec<(usize, Trace)>> = BTreeMap::new();
        for (i, t) in traces.into_iter().enumerate() {
            let Some((name, _)) = self.writers.get_key_value(t.class.as_str()) else {
                return Err(AppendError::UnknownClass(t.class.as_str().to_owned()));
            };
            per_log.entry(name.as_str()).or_default().push((i, t));
        }
        let mut waits = Vec::with_capacity(per_log.len());
        for (name, batch) in per_log {
            let Some(tx) = self.writers.get(name) else {
                continue;
            };
            let (reply, rx) = oneshot::channel();
            tx.send(Request {
                traces: batch,
                reply,
            })
            .await
            .map_err(|_| AppendError::ShuttingDown)?;
            waits.push(rx);
        }
        let mut out: Vec<Option<Receipt>> = vec![None; total];
        for w in waits {
            for (pos, r) in w.await.map_err(|_| AppendError::ShuttingDown)?? {
                out[pos] = Some(r);
            }
        }
        out.into_iter()
            .map(|r| r.ok_or(AppendError::ShuttingDown))
            .collect()
    }
}

/// Loads the checkpoint signing key sealed in `meta`, creating it first if
/// the journal has none (in the setup transaction: one key per journal).
async fn load_signer(
    tx: &tokio_postgres::Transaction<'_>,
    master: &MasterKey,
    instance: &str,
) -> Result<Signer, PgError> {
    let row = tx
        .query_opt("SELECT value FROM meta WHERE key = 'checkpoint_key'", &[])
        .await?;
    let text: Zeroizing<Vec<u8>> = match row {
        Some(r) => {
            let sealed: Vec<u8> = r.get(0);
            master.open_blob(Path::new("meta/checkpoint_key"), SIGNER_LABEL, &sealed)?
        }
        None => {
            let mut secret = Zeroizing::new([0u8; 32]);
            crypto::random(&mut secret[..])?;
            use base64::Engine;
            let text = Zeroizing::new(
                format!(
                    "{instance}/registre\n{}\n",
                    base64::engine::general_purpose::STANDARD.encode(&secret[..])
                )
                .into_bytes(),
            );
            let sealed = master.seal_blob(SIGNER_LABEL, &text)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('checkpoint_key', $1)",
                &[&sealed],
            )
            .await?;
            text
        }
    };
    let bad = || PgError::Corrupt("the stored checkpoint key does not decode".into());
    let s = std::str::from_utf8(&text).map_err(|_| bad())?;
    let (name, b64) = s.trim_end().split_once('\n').ok_or_else(bad)?;
    use base64::Engine;
    let secret = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad())?,
    );
    let secret: [u8; 32] = secret.as_slice().try_into().map_err(|_| bad())?;
    Signer::new(name, &secret).map_err(|e| PgError::Corrupt(e.to_string()))
}

/// Registers `class` (its row, its partitioned table, its history key) if
/// new, and checks its purge history authenticates.
async fn register_log(
    tx: &tokio_postgres::Transaction<'_>,
    master: &MasterKey,
    class: &ClassName,
    opts: &PgOptions,
) -> Result<LogMeta, PgOpenError> {
    let name = class.as_str();
    let row = tx
        .query_opt("SELECT id FROM logs WHERE name = $1", &[&name])
        .await
        .map_err(PgError::from)?;
    let id: i16 = match row {
        Some(r) => r.get(0),
        None => {
            let id: i16 = tx
                .query_one("SELECT coalesce(max(id), 0) + 1 FROM logs", &[])
                .await
                .map_err(PgError::from)?
                .get::<_, i32>(0)
                .try_into()
                .map_err(|_| PgOpenError::Config("too many classes".into()))?;
            tx.execute("INSERT INTO logs (id, name) VALUES ($1, $2)", &[&id, &name])
                .await
                .map_err(PgError::from)?;
            tx.batch_execute(&format!(
                "CREATE TABLE traces_{id} PARTITION OF traces FOR VALUES IN ({id}) \
                 PARTITION BY LIST (period)"
            ))
            .await
            .map_err(PgError::from)?;
            id
        }
    };
    let label = format!("{name}/purged");
    let history_key = match tx
        .query_opt("SELECT wrapped FROM data_keys WHERE label = $1", &[&label])
        .await
        .map_err(PgError::from)?
    {
        Some(r) => {
            let wrapped: Vec<u8> = r.get(0);
            unwrap_keys(master, &label, &wrapped).map_err(PgOpenError::from)?
        }
        None => {
            let (keys, bytes) = SegmentKeys::generate().map_err(PgError::from)?;
            let wrapped = master.wrap(&label, &bytes).map_err(PgError::from)?;
            tx.execute(
                "INSERT INTO data_keys (label, wrapped) VALUES ($1, $2)",
                &[&label, &wrapped.as_slice()],
            )
            .await
            .map_err(PgError::from)?;
            keys
        }
    };
    for r in tx
        .query(
            "SELECT seq, record FROM purges WHERE log = $1 ORDER BY seq",
            &[&id],
        )
        .await
        .map_err(PgError::from)?
    {
        let seq: i32 = r.get(0);
        let rec: Vec<u8> = r.get(1);
        if Purged::decode(&rec).is_none() || !Purged::authentic(&rec, &history_key) {
            return Err(PgOpenError::Corrupt(format!(
                "purge record {seq} of log {name} does not authenticate with the log's history \
                 key: partitions may have been dropped by hand and the record forged"
            )));
        }
    }
    let size: i64 = tx
        .query_one("SELECT size FROM logs WHERE id = $1", &[&id])
        .await
        .map_err(PgError::from)?
        .get(0);
    let latest: Option<i64> = tx
        .query_one("SELECT max(size) FROM checkpoints WHERE log = $1", &[&id])
        .await
        .map_err(PgError::from)?
        .get(0);
    if latest.is_some_and(|l| l > size) {
        return Err(PgOpenError::Corrupt(format!(
            "the latest checkpoint of log {name} covers {} traces but the log holds {size}",
            latest.unwrap_or_default()
        )));
    }
    let period = opts
        .partition_periods
        .get(name)
        .copied()
        .unwrap_or(opts.partition_period_secs)
        .max(1);
    Ok(LogMeta {
        name: class.clone(),
        id,
        origin: format!("{}/registre/{name}", opts.instance),
        period_micros: (period as i64).saturating_mul(1_000_000),
        tree: tokio::sync::Mutex::new(None),
        history_key: Arc::new(history_key),
    })
}

pub(crate) fn unwrap_keys(
    master: &MasterKey,
    label: &str,
    wrapped: &[u8],
) -> Result<SegmentKeys, PgError> {
    let path = PathBuf::from(format!("postgres:data_keys/{label}"));
    let bytes = master.unwrap(&path, label, wrapped)?;
    Ok(SegmentKeys::from_bytes(&bytes))
}

impl Inner {
    pub(crate) fn log(&self, name: &str) -> Result<&LogMeta, IntegrityError> {
        self.logs
            .get(name)
            .ok_or_else(|| IntegrityError::UnknownLog(name.to_owned()))
    }

    /// The keys of `label`, from this node's cache or the database.
    pub(crate) async fn keys<C: GenericClient + Sync>(
        &self,
        c: &C,
        label: &str,
    ) -> Result<Arc<SegmentKeys>, PgError> {
        if let Some(k) = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(label)
        {
            return Ok(k.clone());
        }
        let row = c
            .query_opt("SELECT wrapped FROM data_keys WHERE label = $1", &[&label])
            .await?
            .ok_or_else(|| PgError::Corrupt(format!("the data key {label} is missing")))?;
        let wrapped: Vec<u8> = row.get(0);
        let keys = Arc::new(unwrap_keys(&self.master, label, &wrapped)?);
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(label.to_owned(), keys.clone());
        Ok(keys)
    }

    fn forget_keys(&self, label: &str) {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(label);
    }

    /// Takes the log's lock for the caller's transaction (the writer's
    /// election) and returns `(size, last_time, hold_gen)`.
    pub(crate) async fn lock_log(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        log: &LogMeta,
    ) -> Result<(u64, i64, i32), PgError> {
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&self.ns, &i32::from(log.id)],
        )
        .await?;
        let row = tx
            .query_one(
                "SELECT size, last_time, hold_gen FROM logs WHERE id = $1 FOR UPDATE",
                &[&log.id],
            )
            .await?;
        Ok((row.get::<_, i64>(0) as u64, row.get(1), row.get(2)))
    }

    /// One group commit: the traces of `group`, in order, in one transaction.
    async fn commit_group(
        &self,
        log: &LogMeta,
        group: &[Request],
    ) -> Result<Vec<Vec<(usize, Receipt)>>, PgError> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        let (size, last_time, _) = self.lock_log(&tx, log).await?;
        let now = self.clock.now_micros().max(last_time);
        let period = now.div_euclid(log.period_micros) * log.period_micros;
        let (relname, label) = self.partition(&tx, log, period, size).await?;
        let keys = self.keys(&tx, &label).await?;

        let total: usize = group.iter().map(|r| r.traces.len()).sum();
        const RANDOM: usize = 16 + 10 + NONCE_LEN;
        let mut random = vec![0u8; total * RANDOM];
        crypto::random(&mut random)?;
        let received_at = format_received_at(now);
        let millis = (now / 1000).max(0) as u64;
        let name = log.name.as_str();
        let mut idx = Vec::with_capacity(total);
        let mut actor = Vec::with_capacity(total);
        let mut action = Vec::with_capacity(total);
        let mut mailbox = Vec::with_capacity(total);
        let mut patient = Vec::with_capacity(total);
        let mut records = Vec::with_capacity(total);
        let mut commitments: Vec<Vec<u8>> = Vec::with_capacity(total);
        let mut replies = Vec::with_capacity(group.len());
        let mut index = size;
        let mut r = 0usize;
        for req in group {
            let mut rec = Vec::with_capacity(req.traces.len());
            for (pos, trace) in &req.traces {
                let rnd = &random[r..r + RANDOM];
                r += RANDOM;
                let mut rb = [0u8; 10];
                rb.copy_from_slice(&rnd[16..26]);
                let mut nonce = [0u8; NONCE_LEN];
                nonce.copy_from_slice(&rnd[26..]);
                let id = uuid::Builder::from_unix_timestamp_millis(millis, &rb).into_uuid();
                let stored = StoredTrace::new(trace.clone(), index, id, received_at.clone());
                // record = nonce ‖ seal(salt ‖ JCS) ‖ tag, as the embedded store.
                let mut buf = Vec::with_capacity(512);
                buf.extend_from_slice(&nonce);
                buf.extend_from_slice(&rnd[..16]);
                stored.write_canonical(&mut buf);
                commitments.push(at_rest::commitment(&buf[NONCE_LEN..]).to_vec());
                let tag = keys.seal(name, index, nonce, &mut buf[NONCE_LEN..]);
                buf.extend_from_slice(&tag);
                let b = blinds(&keys, &stored);
                idx.push(index as i64);
                actor.push(b.actor);
                action.push(b.action);
                mailbox.push(b.mailbox);
                patient.push(b.patient);
                records.push(buf);
                rec.push((
                    *pos,
                    Receipt {
                        log: log.name.clone(),
                        index,
                        id,
                    },
                ));
                index += 1;
            }
            replies.push(rec);
        }
        tx.execute(
            &format!(
                "INSERT INTO {relname} (log, period, idx, received_at, actor, action, mailbox, \
                 patient, record) SELECT $1, $2, u.idx, $3, u.actor, u.action, u.mailbox, \
                 u.patient, u.record FROM unnest($4::int8[], $5::int8[], $6::int8[], \
                 $7::int8[], $8::int8[], $9::bytea[]) AS u(idx, actor, action, mailbox, \
                 patient, record)"
            ),
            &[
                &log.id, &period, &now, &idx, &actor, &action, &mailbox, &patient, &records,
            ],
        )
        .await?;
        tx.execute(
            "INSERT INTO entries (log, idx, commitment) SELECT $1, u.idx, u.c \
             FROM unnest($2::int8[], $3::bytea[]) AS u(idx, c)",
            &[&log.id, &idx, &commitments],
        )
        .await?;
        tx.execute(
            "UPDATE logs SET size = $2, last_time = $3 WHERE id = $1",
            &[&log.id, &(index as i64), &now],
        )
        .await?;
        tx.commit().await?;
        Ok(replies)
    }

    /// The partition of `period` (table name, key label), created with a
    /// fresh data key if the log has none yet, in the caller's transaction.
    async fn partition(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        log: &LogMeta,
        period: i64,
        next_index: u64,
    ) -> Result<(String, String), PgError> {
        let row = tx
            .query_opt(
                "SELECT relname, first_index FROM partitions WHERE log = $1 AND period = $2",
                &[&log.id, &period],
            )
            .await?;
        if let Some(r) = row {
            let first: i64 = r.get(1);
            return Ok((r.get(0), partition_label(&log.name, period, first)));
        }
        let relname = schema::partition_name(log.id, period);
        let label = partition_label(&log.name, period, next_index as i64);
        // The key is in the same transaction as the partition it opens.
        let (keys, bytes) = SegmentKeys::generate()?;
        let wrapped = self.master.wrap(&label, &bytes)?;
        tx.execute(
            "INSERT INTO data_keys (label, wrapped) VALUES ($1, $2)",
            &[&label, &wrapped.as_slice()],
        )
        .await?;
        tx.batch_execute(&format!(
            "CREATE TABLE {relname} PARTITION OF traces_{id} FOR VALUES IN ({period})",
            id = log.id
        ))
        .await?;
        tx.execute(
            "INSERT INTO partitions (log, period, relname, first_index) VALUES ($1, $2, $3, $4)",
            &[&log.id, &period, &relname, &(next_index as i64)],
        )
        .await?;
        drop(keys);
        Ok((relname, label))
    }
}

/// A partition's key label: `<class>/p<period µs>-<first index>` (never
/// reused: a partition re-created for a purged period starts further on).
pub(crate) fn partition_label(class: &ClassName, period: i64, first: i64) -> String {
    format!("{}/p{period}-{first}", class.as_str())
}

pub(crate) fn hold_label(class: &ClassName, gen_: i32) -> String {
    format!("{}/hold-{gen_:06}", class.as_str())
}

/// A log's group-commit task.
async fn writer(inner: Arc<Inner>, name: String, mut rx: mpsc::Receiver<Request>) {
    while let Some(first) = rx.recv().await {
        let mut n = first.traces.len();
        let mut group = vec![first];
        while n < inner.max_group {
            match rx.try_recv() {
                Ok(r) => {
                    n += r.traces.len();
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        let Some(log) = inner.logs.get(&name) else {
            return;
        };
        match inner.commit_group(log, &group).await {
            Ok(receipts) => {
                for (req, rec) in group.into_iter().zip(receipts) {
                    let _ = req.reply.send(Ok(rec));
                }
            }
            Err(e) => {
                let why = format!("log {name}: {e}");
                tracing::error!(log = %name, error = %e, "a group commit failed; nothing of it was acknowledged");
                for req in group {
                    let _ = req.reply.send(Err(AppendError::Unavailable(why.clone())));
                }
            }
        }
    }
}

/// Issues a checkpoint of each grown log every interval (every node runs
/// one; the log lock makes them take turns).
async fn checkpointer(inner: std::sync::Weak<Inner>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        for name in inner.logs.keys() {
            if let Err(e) = inner.checkpoint(name, true).await {
                tracing::warn!(log = %name, error = %e, "cannot issue a checkpoint");
            }
        }
    }
}

pub(crate) fn integrity(e: PgError) -> IntegrityError {
    IntegrityError::Unavailable(e.to_string())
}

// ------------------------------------------------------------------ holds

impl Inner {
    async fn read_holds<C: GenericClient + Sync>(
        &self,
        c: &C,
        lock: bool,
    ) -> Result<Vec<Hold>, PgError> {
        let sql = if lock {
            "SELECT value FROM meta WHERE key = 'holds' FOR UPDATE"
        } else {
            "SELECT value FROM meta WHERE key = 'holds'"
        };
        let sealed: Vec<u8> = c.query_one(sql, &[]).await?.get(0);
        let plain = self
            .master
            .open_blob(Path::new("meta/holds"), HOLDS_LABEL, &sealed)?;
        serde_json::from_slice(&plain)
            .map_err(|_| PgError::Corrupt("the legal holds do not decode".into()))
    }

    async fn update_holds(
        &self,
        change: impl FnOnce(&mut Vec<Hold>) -> Result<Hold, HoldError>,
    ) -> Result<Hold, HoldError> {
        let storage = |e: PgError| HoldError::Storage(e.to_string());
        let mut conn = self.pool.get().await.map_err(storage)?;
        let tx = conn.transaction().await.map_err(|e| storage(e.into()))?;
        let mut holds = self.read_holds(&tx, true).await.map_err(storage)?;
        let out = change(&mut holds)?;
        let plain = Zeroizing::new(
            serde_json::to_vec(&holds).map_err(|e| HoldError::Storage(e.to_string()))?,
        );
        let sealed = self
            .master
            .seal_blob(HOLDS_LABEL, &plain)
            .map_err(|e| HoldError::Storage(e.to_string()))?;
        tx.execute("UPDATE meta SET value = $1 WHERE key = 'holds'", &[&sealed])
            .await
            .map_err(|e| storage(e.into()))?;
        tx.commit().await.map_err(|e| storage(e.into()))?;
        Ok(out)
    }

    async fn holds(&self) -> Result<Vec<Hold>, PgError> {
        let conn = self.pool.get().await?;
        self.read_holds(&*conn, false).await
    }
}

// ------------------------------------------------------------------ purge

/// A trace a purge keeps, opened.
/// One unit a purge takes traces from: a hold generation or a partition.
struct Unit<'a> {
    /// Its key row's label.
    label: &'a str,
    first: i64,
    end: i64,
    dropped: u64,
    /// The hold generation it was (0 for a partition).
    old_hold: i32,
}

/// One log's purge as it goes: its report, newest hold generation and
/// purge record sequence, its time and whether it is a dry run.
struct PurgeRun<'a> {
    out: &'a mut LogPurge,
    hold_gen: &'a mut i32,
    seq: &'a mut i32,
    now: i64,
    dry_run: bool,
}

struct Kept {
    idx: i64,
    received_at: i64,
    plain: Zeroizing<Vec<u8>>,
    trace: StoredTrace,
}

impl Inner {
    async fn purge(&self, req: PurgeRequest) -> Result<PurgeReport, PurgeError> {
        let now = self.clock.now_micros();
        let mut holds = req.holds.clone();
        let stored = self
            .holds()
            .await
            .map_err(|e| PurgeError::Failed(e.to_string()))?;
        holds.extend(
            stored
                .iter()
                .filter(|h| h.active())
                .filter_map(|h| h.filter.to_query().ok()),
        );
        let mut report = PurgeReport {
            dry_run: req.dry_run,
            at: format_received_at(now),
            logs: Vec::new(),
        };
        for (class, retention) in &req.retention {
            let Some(log) = self.logs.get(class.as_str()) else {
                continue;
            };
            let cutoff = retention.cutoff(now);
            let mut r = self
                .purge_log(log, cutoff, &holds, &req)
                .await
                .map_err(|e| PurgeError::Failed(format!("purge of log {}: {e}", log.name)))?;
            r.retention = retention.to_string();
            report.logs.push(r);
        }
        Ok(report)
    }

    async fn purge_log(
        &self,
        log: &LogMeta,
        cutoff: i64,
        holds: &[Query],
        req: &PurgeRequest,
    ) -> Result<LogPurge, PgError> {
        let mut out = LogPurge {
            log: log.name.as_str().to_owned(),
            cutoff: format_received_at(cutoff),
            ..LogPurge::default()
        };
        let holds: Vec<&Query> = holds
            .iter()
            .filter(|q| q.class.as_ref().is_none_or(|c| *c == log.name))
            .collect();
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        let (size, _, mut hold_gen) = self.lock_log(&tx, log).await?;
        if !req.dry_run {
            // What goes stays provable: a checkpoint covers it first.
            self.checkpoint_locked(&tx, log, size).await?;
        }
        let mut seq: i32 = tx
            .query_one(
                "SELECT coalesce(max(seq), 0) FROM purges WHERE log = $1",
                &[&log.id],
            )
            .await?
            .get(0);
        let mut shredded = Vec::new();
        let mut examined = 0u64;
        let now = self.clock.now_micros();

        // 1. Traces already held: those no hold keeps now and past
        //    retention go; a generation changed is re-sealed whole.
        let gens: Vec<i32> = tx
            .query(
                "SELECT DISTINCT gen FROM held WHERE log = $1 ORDER BY gen",
                &[&log.id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for g in gens {
            let label = hold_label(&log.name, g);
            let keys = self.keys(&tx, &label).await?;
            let rows = tx
                .query(
                    "SELECT idx, received_at, record FROM held WHERE log = $1 AND gen = $2 \
                     ORDER BY idx",
                    &[&log.id, &g],
                )
                .await?;
            let all = rows.len();
            let mut kept = Vec::new();
            let (mut first, mut end) = (i64::MAX, 0i64);
            for r in rows {
                let k = open_row(log, &keys, r.get(0), r.get(1), r.get(2))?;
                first = first.min(k.idx);
                end = end.max(k.idx + 1);
                if k.received_at >= cutoff || held_by(&holds, &k) {
                    kept.push(k);
                }
            }
            examined += all as u64;
            if let Some(p) = &req.progress {
                p(examined);
            }
            if kept.len() == all {
                continue;
            }
            let unit = Unit {
                label: &label,
                first,
                end,
                dropped: (all - kept.len()) as u64,
                old_hold: g,
            };
            let mut run = PurgeRun {
                out: &mut out,
                hold_gen: &mut hold_gen,
                seq: &mut seq,
                now,
                dry_run: req.dry_run,
            };
            if !self.purge_unit(&tx, log, unit, kept, &mut run).await? {
                continue;
            }
            tx.execute(
                "DELETE FROM held WHERE log = $1 AND gen = $2",
                &[&log.id, &g],
            )
            .await?;
            shredded.push(label);
        }

        // 2. Partitions entirely past retention, oldest first.
        let parts = tx
            .query(
                "SELECT period, relname, first_index FROM partitions WHERE log = $1 \
                 ORDER BY period",
                &[&log.id],
            )
            .await?;
        for p in parts {
            let period: i64 = p.get(0);
            let relname: String = p.get(1);
            let first: i64 = p.get(2);
            let stats = tx
                .query_one(
                    &format!(
                        "SELECT count(*), max(received_at), max(idx), \
                         pg_total_relation_size('{relname}') FROM {relname}"
                    ),
                    &[],
                )
                .await?;
            let count: i64 = stats.get(0);
            let last: Option<i64> = stats.get(1);
            let max_idx: Option<i64> = stats.get(2);
            let bytes: i64 = stats.get(3);
            if count == 0 || last.is_none_or(|t| t >= cutoff) {
                break;
            }
            let label = partition_label(&log.name, period, first);
            let kept = if holds.is_empty() {
                Vec::new()
            } else {
                let keys = self.keys(&tx, &label).await?;
                let mut kept = Vec::new();
                for r in tx
                    .query(
                        &format!("SELECT idx, received_at, record FROM {relname} ORDER BY idx"),
                        &[],
                    )
                    .await?
                {
                    let k = open_row(log, &keys, r.get(0), r.get(1), r.get(2))?;
                    if held_by(&holds, &k) {
                        kept.push(k);
                    }
                }
                kept
            };
            examined += count as u64;
            if let Some(p) = &req.progress {
                p(examined);
            }
            out.bytes += bytes.max(0) as u64;
            let unit = Unit {
                label: &label,
                first,
                end: max_idx.map_or(first, |m| m + 1),
                dropped: count as u64 - kept.len() as u64,
                old_hold: 0,
            };
            let mut run = PurgeRun {
                out: &mut out,
                hold_gen: &mut hold_gen,
                seq: &mut seq,
                now,
                dry_run: req.dry_run,
            };
            // Keys die first (in purge_unit), then the partition.
            if !self.purge_unit(&tx, log, unit, kept, &mut run).await? {
                continue;
            }
            tx.execute(
                "DELETE FROM partitions WHERE log = $1 AND period = $2",
                &[&log.id, &period],
            )
            .await?;
            tx.batch_execute(&format!("DROP TABLE {relname}")).await?;
            shredded.push(label);
        }
        tx.execute(
            "UPDATE logs SET hold_gen = $2 WHERE id = $1",
            &[&log.id, &hold_gen],
        )
        .await?;
        tx.commit().await?;
        for l in &shredded {
            self.forget_keys(l);
        }
        if !shredded.is_empty() {
            // Dead key rows out of the table's pages (best effort).
            if let Err(e) = conn.batch_execute("VACUUM data_keys").await {
                tracing::warn!(error = %e, "VACUUM of data_keys after a purge failed");
            }
        }
        Ok(out)
    }

    /// Writes hold generation `gen_`: the kept traces re-sealed under a new
    /// key, with blind values under it.
    /// What the held-generation and partition branches of a purge share
    /// for one unit (a generation or a partition) that loses traces: the
    /// report's tally; then, unless a dry run, the traces still held
    /// re-sealed into a new hold generation, the authenticated purge record
    /// appended, and the unit's key row deleted. `false` on a dry run: the
    /// caller must then leave the unit in place.
    async fn purge_unit(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        log: &LogMeta,
        unit: Unit<'_>,
        kept: Vec<Kept>,
        run: &mut PurgeRun<'_>,
    ) -> Result<bool, PgError> {
        let (first, end) = (unit.first as u64, unit.end as u64);
        let out = &mut *run.out;
        out.segments += 1;
        out.purged += unit.dropped;
        out.held += kept.len() as u64;
        out.first = Some(out.first.map_or(first, |f| f.min(first)));
        out.end = Some(out.end.map_or(end, |e| e.max(end)));
        if run.dry_run {
            return Ok(false);
        }
        let new_hold = if kept.is_empty() {
            0
        } else {
            *run.hold_gen += 1;
            self.write_held(tx, log, *run.hold_gen, kept).await?;
            *run.hold_gen
        };
        *run.seq += 1;
        let record = Purged {
            first,
            end,
            at: run.now,
            dropped: unit.dropped,
            new_hold: new_hold as u32,
            old_hold: unit.old_hold as u32,
        }
        .encode(&log.history_key);
        tx.execute(
            "INSERT INTO purges (log, seq, record) VALUES ($1, $2, $3)",
            &[&log.id, &*run.seq, &record.as_slice()],
        )
        .await?;
        tx.execute("DELETE FROM data_keys WHERE label = $1", &[&unit.label])
            .await?;
        Ok(true)
    }

    async fn write_held(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        log: &LogMeta,
        gen_: i32,
        kept: Vec<Kept>,
    ) -> Result<(), PgError> {
        let label = hold_label(&log.name, gen_);
        let (keys, bytes) = SegmentKeys::generate()?;
        let wrapped = self.master.wrap(&label, &bytes)?;
        tx.execute(
            "INSERT INTO data_keys (label, wrapped) VALUES ($1, $2)",
            &[&label, &wrapped.as_slice()],
        )
        .await?;
        let mut nonces = vec![0u8; kept.len() * NONCE_LEN];
        crypto::random(&mut nonces)?;
        for (i, k) in kept.into_iter().enumerate() {
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&nonces[i * NONCE_LEN..(i + 1) * NONCE_LEN]);
            let mut buf = Vec::with_capacity(k.plain.len() + 28);
            buf.extend_from_slice(&nonce);
            buf.extend_from_slice(&k.plain);
            let tag = keys.seal(
                log.name.as_str(),
                k.idx as u64,
                nonce,
                &mut buf[NONCE_LEN..],
            );
            buf.extend_from_slice(&tag);
            let b = blinds(&keys, &k.trace);
            tx.execute(
                "INSERT INTO held (log, gen, idx, received_at, actor, action, mailbox, patient, \
                 record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &log.id,
                    &gen_,
                    &k.idx,
                    &k.received_at,
                    &b.actor,
                    &b.action,
                    &b.mailbox,
                    &b.patient,
                    &buf,
                ],
            )
            .await?;
        }
        Ok(())
    }
}

/// Opens a stored record (`nonce ‖ ciphertext ‖ tag`) of `log` at `idx`.
fn open_row(
    log: &LogMeta,
    keys: &SegmentKeys,
    idx: i64,
    received_at: i64,
    mut record: Vec<u8>,
) -> Result<Kept, PgError> {
    let plain = keys
        .open(log.name.as_str(), idx as u64, &mut record)
        .ok_or_else(|| {
            PgError::Corrupt(format!(
                "record {idx} of log {} does not open with its data key",
                log.name
            ))
        })?;
    let plain = Zeroizing::new(plain.to_vec());
    let rec = at_rest::decode_record(&plain)
        .map_err(|why| PgError::Corrupt(format!("record {idx} of log {}: {why}", log.name)))?;
    Ok(Kept {
        idx,
        received_at,
        plain,
        trace: rec.trace,
    })
}

fn held_by(holds: &[&Query], k: &Kept) -> bool {
    holds.iter().any(|q| {
        q.since.is_none_or(|s| k.received_at >= s)
            && q.until.is_none_or(|u| k.received_at < u)
            && q.matches(&k.trace)
    })
}

// ------------------------------------------------------- master rotation

/// What a master key rotation did.
#[derive(Debug, Clone, Default)]
pub struct Rotation {
    pub old_id: String,
    pub new_id: String,
    pub rewrapped: usize,
    pub already: usize,
}

/// Rewraps every data key of the journal in `schema` from `old` to `new`,
/// re-seals the holds and the checkpoint key, and records `new` as the
/// journal's key: one transaction (all or nothing). Run it with every node
/// stopped (a running node keeps wrapping new keys with the old key).
pub async fn rotate_master(
    url: &str,
    schema: &str,
    tls_root_cert: Option<PathBuf>,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<Rotation, PgOpenError> {
    if !schema::valid_schema(schema) {
        return Err(PgOpenError::Config(format!(
            "schema `{schema}` is not a plain lowercase identifier"
        )));
    }
    let pool = Pool::new(url, tls_root_cert, schema, 1, Duration::from_secs(5))?;
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await.map_err(PgError::from)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&lock_ns(schema), &SETUP_LOCK],
    )
    .await
    .map_err(PgError::from)?;
    let recorded: Vec<u8> = tx
        .query_one(
            "SELECT value FROM meta WHERE key = 'master_id' FOR UPDATE",
            &[],
        )
        .await
        .map_err(PgError::from)?
        .get(0);
    if recorded != old.id().into_bytes() && recorded != new.id().into_bytes() {
        return Err(PgOpenError::Key(format!(
            "neither key is the journal's master key (id {})",
            String::from_utf8_lossy(&recorded)
        )));
    }
    let mut out = Rotation {
        old_id: old.id(),
        new_id: new.id(),
        ..Rotation::default()
    };
    for r in tx
        .query(
            "SELECT label, wrapped FROM data_keys ORDER BY label FOR UPDATE",
            &[],
        )
        .await
        .map_err(PgError::from)?
    {
        let label: String = r.get(0);
        let wrapped: Vec<u8> = r.get(1);
        let path = PathBuf::from(format!("postgres:data_keys/{label}"));
        if crypto::hex(&crypto::key_file_master(&path, &wrapped).map_err(PgError::from)?)
            == new.id()
        {
            out.already += 1;
            continue;
        }
        let keys = old.unwrap(&path, &label, &wrapped).map_err(PgError::from)?;
        let rewrapped = new.wrap(&label, &keys).map_err(PgError::from)?;
        tx.execute(
            "UPDATE data_keys SET wrapped = $2 WHERE label = $1",
            &[&label, &rewrapped.as_slice()],
        )
        .await
        .map_err(PgError::from)?;
        out.rewrapped += 1;
    }
    for (key, label) in [("holds", HOLDS_LABEL), ("checkpoint_key", SIGNER_LABEL)] {
        let Some(r) = tx
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
            .await
            .map_err(PgError::from)?
        else {
            continue;
        };
        let sealed: Vec<u8> = r.get(0);
        let path = PathBuf::from(format!("postgres:meta/{key}"));
        if new.open_blob(&path, label, &sealed).is_ok() {
            continue;
        }
        let plain = old
            .open_blob(&path, label, &sealed)
            .map_err(PgError::from)?;
        let resealed = new.seal_blob(label, &plain).map_err(PgError::from)?;
        tx.execute(
            "UPDATE meta SET value = $2 WHERE key = $1",
            &[&key, &resealed],
        )
        .await
        .map_err(PgError::from)?;
        out.rewrapped += 1;
    }
    tx.execute(
        "UPDATE meta SET value = $1 WHERE key = 'master_id'",
        &[&new.id().into_bytes()],
    )
    .await
    .map_err(PgError::from)?;
    tx.commit().await.map_err(PgError::from)?;
    Ok(out)
}

// ------------------------------------------------------------ the trait

impl Store for PgStore {
    fn append(&self, traces: Vec<Trace>) -> BoxFuture<'_, Result<Vec<Receipt>, AppendError>> {
        Box::pin(self.append_inner(traces))
    }

    fn search(&self, query: Query) -> BoxFuture<'_, Result<Page, SearchError>> {
        Box::pin(self.inner.search(query))
    }

    fn classes(&self) -> Vec<ClassName> {
        self.inner.logs.values().map(|l| l.name.clone()).collect()
    }

    fn stats(&self) -> BoxFuture<'_, Result<Vec<LogStats>, IntegrityError>> {
        Box::pin(async move { self.inner.stats().await.map_err(integrity) })
    }

    fn logs(&self) -> BoxFuture<'_, Result<Vec<LogInfo>, IntegrityError>> {
        Box::pin(async move { self.inner.log_infos().await.map_err(integrity) })
    }

    fn verifier_key(&self) -> String {
        self.inner.signer.verifier_key()
    }

    fn checkpoint(
        &self,
        log: &str,
        fresh: bool,
    ) -> BoxFuture<'_, Result<Option<SignedCheckpoint>, IntegrityError>> {
        let log = log.to_owned();
        Box::pin(async move {
            self.inner.log(&log)?;
            self.inner.checkpoint(&log, fresh).await.map_err(integrity)
        })
    }

    fn checkpoint_history(
        &self,
        log: &str,
    ) -> BoxFuture<'_, Result<Vec<SignedCheckpoint>, IntegrityError>> {
        let log = log.to_owned();
        Box::pin(async move { self.inner.checkpoint_history(&log).await })
    }

    fn tile(&self, log: &str, tile: TilePath) -> BoxFuture<'_, Result<Vec<u8>, IntegrityError>> {
        let log = log.to_owned();
        Box::pin(async move { self.inner.tile(&log, tile).await })
    }

    fn inclusion_proof(
        &self,
        log: &str,
        index: u64,
        size: u64,
    ) -> BoxFuture<'_, Result<Vec<Hash>, IntegrityError>> {
        let log = log.to_owned();
        Box::pin(async move { self.inner.inclusion_proof(&log, index, size).await })
    }

    fn consistency_proof(
        &self,
        log: &str,
        from: u64,
        to: u64,
    ) -> BoxFuture<'_, Result<Vec<Hash>, IntegrityError>> {
        let log = log.to_owned();
        Box::pin(async move { self.inner.consistency_proof(&log, from, to).await })
    }

    fn purge(&self, req: PurgeRequest) -> BoxFuture<'_, Result<PurgeReport, PurgeError>> {
        Box::pin(self.inner.purge(req))
    }

    fn holds(&self) -> BoxFuture<'_, Result<Vec<Hold>, HoldError>> {
        Box::pin(async move {
            self.inner
                .holds()
                .await
                .map_err(|e| HoldError::Storage(e.to_string()))
        })
    }

    fn add_hold(&self, hold: Hold) -> BoxFuture<'_, Result<Hold, HoldError>> {
        Box::pin(async move {
            hold.filter.to_query().map_err(HoldError::Invalid)?;
            if hold.reason.trim().is_empty() {
                return Err(HoldError::Invalid("a hold needs a reason".into()));
            }
            self.inner
                .update_holds(move |holds| {
                    if holds.iter().any(|h| h.id == hold.id) {
                        return Err(HoldError::Duplicate(hold.id));
                    }
                    holds.push(hold.clone());
                    Ok(hold)
                })
                .await
        })
    }

    fn release_hold(
        &self,
        id: String,
        by: String,
        at: String,
    ) -> BoxFuture<'_, Result<Hold, HoldError>> {
        Box::pin(async move {
            self.inner
                .update_holds(move |holds| {
                    let h = holds
                        .iter_mut()
                        .find(|h| h.id == id)
                        .ok_or_else(|| HoldError::Unknown(id.clone()))?;
                    if !h.active() {
                        return Err(HoldError::Released(id));
                    }
                    h.released_by = Some(by);
                    h.released_at = Some(at);
                    Ok(h.clone())
                })
                .await
        })
    }
}

impl Inner {
    async fn stats(&self) -> Result<Vec<LogStats>, PgError> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query(
                "SELECT l.name, l.size, \
                   (SELECT count(*) FROM partitions p WHERE p.log = l.id) \
                   + (SELECT count(DISTINCT gen) FROM held h WHERE h.log = l.id), \
                   coalesce((SELECT sum(pg_total_relation_size(p.relname::regclass)) \
                             FROM partitions p WHERE p.log = l.id), 0)::int8 \
                 FROM logs l ORDER BY l.name",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let name: String = r.get(0);
                let log = self.logs.get(&name)?;
                Some(LogStats {
                    log: log.name.clone(),
                    size: r.get::<_, i64>(1) as u64,
                    segments: r.get::<_, i64>(2) as usize,
                    bytes: r.get::<_, i64>(3) as u64,
                })
            })
            .collect())
    }

    async fn log_infos(&self) -> Result<Vec<LogInfo>, PgError> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query(
                "SELECT l.name, l.size, \
                   coalesce((SELECT max(c.size) FROM checkpoints c WHERE c.log = l.id), 0) \
                 FROM logs l ORDER BY l.name",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let name: String = r.get(0);
                let log = self.logs.get(&name)?;
                Some(LogInfo {
                    log: log.name.clone(),
                    origin: log.origin.clone(),
                    size: r.get::<_, i64>(1) as u64,
                    checkpoint_size: r.get::<_, i64>(2) as u64,
                })
            })
            .collect())
    }

    pub(crate) async fn conn(&self) -> Result<Conn, PgError> {
        self.pool.get().await
    }
}
