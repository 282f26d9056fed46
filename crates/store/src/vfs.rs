//! The storage backend under the embedded store: a tiny file-system
//! interface, so a fault-injecting implementation can make every crash point
//! a unit test (redb's lesson).
//!
//! [`OsVfs`] is the real one. [`FaultyVfs`] keeps files in memory, tracks
//! which bytes are *written* and which are *durable* (synced), and on
//! [`FaultyVfs::crash`] keeps only the durable bytes plus, if asked, a torn
//! prefix of the rest. It can also fail writes (after a short write) and
//! syncs on demand.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A file opened for positional reads and writes.
#[allow(clippy::len_without_is_empty)]
pub trait VFile: Send + Sync {
    fn len(&self) -> io::Result<u64>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every byte written so far durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// The directory operations the embedded store needs.
pub trait Vfs: Send + Sync {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// File names (not paths) in `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens a file for reading and writing, creating it if `create`.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VFile>>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (created or removed files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsVfs;

struct OsFile(File);

impl VFile for OsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.0, buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(&self.0, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Vfs for OsVfs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        // Traces are health data: only the service account reads them.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in fs::read_dir(dir)? {
            if let Ok(name) = e?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VFile>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        Ok(Arc::new(OsFile(f)))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// In-memory files with fault injection. Cloning shares the same files.
#[derive(Clone, Default)]
pub struct FaultyVfs {
    inner: Arc<Mutex<FaultState>>,
}

#[derive(Default)]
struct FaultState {
    files: BTreeMap<PathBuf, Arc<MemFile>>,
    /// Fail every sync from the n-th one (0 = the next).
    fail_sync_from: Option<u64>,
    syncs: u64,
    /// Fail the next write (to a file whose name ends so, if given) after
    /// writing only this many of its bytes.
    short_write: Option<(usize, Option<&'static str>)>,
}

#[derive(Default)]
struct MemFile {
    state: Mutex<MemData>,
}

#[derive(Default, Clone)]
struct MemData {
    data: Vec<u8>,
    /// Bytes `..durable` survive a crash.
    durable: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another test thread must not hide this test's result.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FaultyVfs {
    pub fn new() -> FaultyVfs {
        FaultyVfs::default()
    }

    /// Every sync from now on, after `ok_syncs` more successful ones, fails.
    pub fn fail_syncs_after(&self, ok_syncs: u64) {
        let mut st = lock(&self.inner);
        st.fail_sync_from = Some(st.syncs + ok_syncs);
    }

    /// The next write stores only `n` bytes, then fails.
    pub fn short_write_next(&self, n: usize) {
        lock(&self.inner).short_write = Some((n, None));
    }

    /// The next write to a file whose name ends with `suffix` stores only
    /// `n` bytes, then fails.
    pub fn short_write_next_to(&self, n: usize, suffix: &'static str) {
        lock(&self.inner).short_write = Some((n, Some(suffix)));
    }

    pub fn clear_faults(&self) {
        let mut st = lock(&self.inner);
        st.fail_sync_from = None;
        st.short_write = None;
    }

    /// Simulates a power loss: every file keeps its durable bytes, plus the
    /// first `torn(path, unsynced_len)` bytes of what was written after them.
    pub fn crash(&self, mut torn: impl FnMut(&Path, usize) -> usize) {
        let st = lock(&self.inner);
        for (path, f) in &st.files {
            let mut d = lock(&f.state);
            let extra = d.data.len().saturating_sub(d.durable);
            let keep = d.durable + torn(path, extra).min(extra);
            d.data.truncate(keep);
            d.durable = keep;
        }
    }

    /// The bytes of a file as they are now (written, durable or not).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = lock(&self.inner);
        st.files.get(path).map(|f| lock(&f.state).data.clone())
    }

    /// Replaces a file's bytes (all durable): for corruption tests.
    pub fn set_contents(&self, path: &Path, data: Vec<u8>) {
        let mut st = lock(&self.inner);
        let f = st.files.entry(path.to_owned()).or_default();
        let mut d = lock(&f.state);
        d.durable = data.len();
        d.data = data;
    }

    fn check_sync(&self) -> io::Result<()> {
        let mut st = lock(&self.inner);
        let n = st.syncs;
        st.syncs += 1;
        match st.fail_sync_from {
            Some(from) if n >= from => Err(io::Error::other("injected fsync failure")),
            _ => Ok(()),
        }
    }
}

struct FaultyFile {
    file: Arc<MemFile>,
    path: PathBuf,
    vfs: FaultyVfs,
}

impl VFile for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.file.state).data.len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let d = lock(&self.file.state);
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start
            .checked_add(buf.len())
            .ok_or(io::ErrorKind::InvalidInput)?;
        if end > d.data.len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.copy_from_slice(&d.data[start..end]);
        Ok(())
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let short = {
            let mut st = lock(&self.vfs.inner);
            let applies = st.short_write.is_some_and(|(_, suffix)| {
                suffix.is_none_or(|s| self.path.to_string_lossy().ends_with(s))
            });
            if applies {
                st.short_write.take().map(|(n, _)| n)
            } else {
                None
            }
        };
        let n = short.map_or(buf.len(), |n| n.min(buf.len()));
        let mut d = lock(&self.file.state);
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        if d.data.len() < start + n {
            d.data.resize(start + n, 0);
        }
        d.data[start..start + n].copy_from_slice(&buf[..n]);
        if start < d.durable {
            d.durable = start;
        }
        match short {
            Some(_) => Err(io::Error::other("injected short write")),
            None => Ok(()),
        }
    }
    fn sync_data(&self) -> io::Result<()> {
        self.vfs.check_sync()?;
        let mut d = lock(&self.file.state);
        d.durable = d.data.len();
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut d = lock(&self.file.state);
        let len = usize::try_from(len).map_err(io::Error::other)?;
        d.data.resize(len, 0);
        d.durable = d.durable.min(len);
        Ok(())
    }
}

impl Vfs for FaultyVfs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = lock(&self.inner);
        let mut names: Vec<String> = st
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VFile>> {
        let mut st = lock(&self.inner);
        let file = match st.files.get(path) {
            Some(f) => f.clone(),
            None if create => {
                let f = Arc::new(MemFile::default());
                st.files.insert(path.to_owned(), f.clone());
                f
            }
            None => return Err(io::ErrorKind::NotFound.into()),
        };
        Ok(Arc::new(FaultyFile {
            file,
            path: path.to_owned(),
            vfs: self.clone(),
        }))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        lock(&self.inner)
            .files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        self.check_sync()
    }
}
