//! Where the journal's bytes go: a directory of files, behind a trait so
//! that tests can put a fault-injecting one in its place.
//!
//! [`FsStorage`] is the real thing. [`SimStorage`] keeps files in memory and
//! remembers which bytes and which directory changes were made durable
//! (`sync_data`, `sync_dir`); [`SimStorage::crash`] then loses what was not,
//! the way a power cut does (a `kill -9` keeps the page cache, so it cannot
//! test this).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A directory of files. Names are plain file names (no separators).
pub trait Storage: Send + Sync {
    /// The names of the files, sorted.
    fn list(&self) -> io::Result<Vec<String>>;
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// Creates (or empties) a file to append to.
    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file to append to.
    fn open_append(&self, name: &str) -> io::Result<Box<dyn StorageFile>>;
    /// Cuts a file to `len` bytes, durably.
    fn truncate(&self, name: &str, len: u64) -> io::Result<()>;
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes creations, renames and removals in the directory durable.
    fn sync_dir(&self) -> io::Result<()>;
    /// Where the files are, for messages.
    fn describe(&self, name: &str) -> String;
    /// A file's length in bytes (for status and metrics).
    fn size(&self, name: &str) -> io::Result<u64> {
        self.read(name).map(|bytes| bytes.len() as u64)
    }
}

/// A file being appended to.
pub trait StorageFile: Send {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes every byte written so far durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// What a [`Wrapped`] storage adds to the storage it wraps.
pub trait StorageHooks: Send + Sync {
    /// Wraps each file opened for appending (to count, time or fail its writes).
    fn file(&self, file: Box<dyn StorageFile>) -> Box<dyn StorageFile>;
    /// Called before each `sync_dir`.
    fn on_sync_dir(&self) {}
}

/// A storage that passes every call to `inner`, with `hooks` on its files
/// and directory syncs: how tests inject faults and benchmarks count I/O.
pub struct Wrapped<S, H> {
    pub inner: S,
    pub hooks: H,
}

impl<S: Storage, H: StorageHooks> Storage for Wrapped<S, H> {
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.inner.read(name)
    }
    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        Ok(self.hooks.file(self.inner.create(name)?))
    }
    fn open_append(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        Ok(self.hooks.file(self.inner.open_append(name)?))
    }
    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        self.inner.truncate(name, len)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.hooks.on_sync_dir();
        self.inner.sync_dir()
    }
    fn describe(&self, name: &str) -> String {
        self.inner.describe(name)
    }
    fn size(&self, name: &str) -> io::Result<u64> {
        self.inner.size(name)
    }
}

/// Files in a directory of the file system.
///
/// Opening takes an exclusive lock on `dir/LOCK` for as long as any clone
/// lives, so two processes never journal into (or repair) one directory.
#[derive(Clone, Debug)]
pub struct FsStorage {
    dir: PathBuf,
    _lock: Arc<File>,
}

/// The lock file in a data directory.
pub const LOCK_FILE: &str = "LOCK";

impl FsStorage {
    /// Uses `dir`, creating it if needed (durably: each directory it creates
    /// is synced into its parent); fails if another process has it open.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<FsStorage> {
        create_dir_durably(dir.as_ref())?;
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.as_ref().join(LOCK_FILE))?;
        lock.try_lock().map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is in use by another process (locked)", dir.as_ref().display()),
            )
        })?;
        Ok(FsStorage { dir: dir.as_ref().to_path_buf(), _lock: Arc::new(lock) })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// `create_dir_all`, and each directory it had to create synced into its
/// parent, so that a power cut cannot lose a data directory that journal
/// files were already made durable in.
fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    create_dir_durably(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Someone made it meanwhile: theirs to have synced.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    File::open(parent)?.sync_all()
}

struct FsFile(File);

impl StorageFile for FsFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Storage for FsStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Ok(name) = entry.file_name().into_string()
                && name != LOCK_FILE
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(name))
    }

    fn size(&self, name: &str) -> io::Result<u64> {
        fs::metadata(self.path(name)).map(|m| m.len())
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new().create(true).write(true).truncate(true).open(self.path(name))?;
        Ok(Box::new(FsFile(file)))
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(FsFile(OpenOptions::new().append(true).open(self.path(name))?)))
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(self.path(name))?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path(from), self.path(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn describe(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// One in-memory file: what is durable, and what was written since.
#[derive(Clone, Debug, Default)]
struct SimFile {
    durable: Vec<u8>,
    unsynced: Vec<u8>,
}

#[derive(Debug, Default)]
struct SimState {
    /// The directory as the program sees it.
    files: BTreeMap<String, SimFile>,
    /// The directory as it was at the last `sync_dir`: which name held which
    /// file (by the name it was created under).
    durable_names: BTreeMap<String, String>,
    /// Which creation each visible name refers to (renames move it).
    origin: BTreeMap<String, String>,
    /// Counts `sync_data` and `sync_dir` calls (for tests to crash between them).
    syncs: u64,
    /// When set, every write fails with this message (a full disk, say).
    fail_writes: Option<String>,
    /// When set, writes succeed until this many more bytes have been
    /// written; the write that crosses it writes its first bytes up to it,
    /// then fails (a short write, then ENOSPC).
    write_budget: Option<usize>,
    /// When set, the next `sync_data` fails (and the bytes stay unsynced).
    fail_next_sync: bool,
}

/// An in-memory directory that can lose everything not made durable.
#[derive(Clone, Debug, Default)]
pub struct SimStorage {
    state: Arc<Mutex<SimState>>,
}

/// What a simulated power cut does to data written but not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Unsynced bytes vanish; unsynced directory changes are undone.
    LoseUnsynced,
    /// As `LoseUnsynced`, but the first `keep` unsynced bytes of every file
    /// reached the disk (a torn write).
    KeepPrefix { keep: usize },
    /// As `KeepPrefix`, then `garbage` more bytes of junk (a sector half written).
    Garbage { keep: usize, garbage: usize, seed: u64 },
    /// Each `page`-sized block (at file offsets that are multiples of
    /// `page`) holding unsynced bytes independently reached the disk or did
    /// not, as when a power cut interrupts a `fdatasync` that writes pages in
    /// no particular order: a lost block before a kept one reads as zeros,
    /// and the file ends with its last kept block.
    RandomPages { page: usize, seed: u64 },
}

impl SimStorage {
    pub fn new() -> SimStorage {
        SimStorage::default()
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The durable state after a power cut: a new storage (the old handle
    /// and its open files keep writing into the old, lost world).
    pub fn crash(&self, mode: CrashMode) -> SimStorage {
        let state = self.state();
        let mut files = BTreeMap::new();
        let mut origin = BTreeMap::new();
        for (name, creation) in &state.durable_names {
            // The file the durable name pointed at, under whatever name it has now.
            let current = state.origin.iter().find(|(_, c)| *c == creation).map(|(n, _)| n.clone());
            let Some(file) = current.and_then(|n| state.files.get(&n)) else { continue };
            let mut durable = file.durable.clone();
            match mode {
                CrashMode::LoseUnsynced => {}
                CrashMode::KeepPrefix { keep } => {
                    durable.extend_from_slice(&file.unsynced[..keep.min(file.unsynced.len())]);
                }
                CrashMode::Garbage { keep, garbage, seed } => {
                    durable.extend_from_slice(&file.unsynced[..keep.min(file.unsynced.len())]);
                    if !file.unsynced.is_empty() {
                        let mut x = seed | 1;
                        for _ in 0..garbage {
                            durable.push(xorshift(&mut x) as u8);
                        }
                    }
                }
                CrashMode::RandomPages { page, seed } => {
                    let page = page.max(1);
                    // Each file draws its own pages.
                    let mut x = seed ^ crc32c::crc32c(name.as_bytes()) as u64;
                    let base = durable.len();
                    let mut image = [durable.as_slice(), &vec![0; file.unsynced.len()]].concat();
                    let mut end = base;
                    let mut at = base;
                    while at < image.len() {
                        let page_end = ((at / page + 1) * page).min(image.len());
                        if splitmix(&mut x) & 1 == 1 {
                            image[at..page_end].copy_from_slice(&file.unsynced[at - base..page_end - base]);
                            end = page_end;
                        }
                        at = page_end;
                    }
                    image.truncate(end);
                    durable = image;
                }
            }
            files.insert(name.clone(), SimFile { durable, unsynced: Vec::new() });
            origin.insert(name.clone(), creation.clone());
        }
        let durable_names = origin.clone();
        SimStorage {
            state: Arc::new(Mutex::new(SimState {
                files,
                durable_names,
                origin,
                syncs: 0,
                fail_writes: None,
                write_budget: None,
                fail_next_sync: false,
            })),
        }
    }

    /// Number of `sync_data` and `sync_dir` calls so far.
    pub fn syncs(&self) -> u64 {
        self.state().syncs
    }

    /// Makes every later write fail (or, with `None`, succeed again).
    pub fn fail_writes(&self, message: Option<&str>) {
        self.state().fail_writes = message.map(str::to_string);
    }

    /// Lets `bytes` more bytes be written; the write that goes past them
    /// writes what fits, then fails with "no space left", as every write
    /// after it does (until [`SimStorage::fail_writes`]`(None)`).
    pub fn fail_writes_after(&self, bytes: usize) {
        self.state().write_budget = Some(bytes);
    }

    /// Makes the next `sync_data` fail, its bytes left unsynced (an I/O
    /// error during `fdatasync`); the sync after it succeeds, as a retried
    /// `fdatasync` on Linux may report although the data was lost.
    pub fn fail_next_sync(&self) {
        self.state().fail_next_sync = true;
    }

    /// Everything visible in a file (durable or not).
    pub fn contents(&self, name: &str) -> Option<Vec<u8>> {
        self.state().files.get(name).map(|f| [f.durable.as_slice(), f.unsynced.as_slice()].concat())
    }

    /// Replaces a file's contents, durably (for tests that damage files).
    pub fn set_contents(&self, name: &str, bytes: Vec<u8>) {
        let mut state = self.state();
        let creation = format!("set:{name}");
        state.files.insert(name.to_string(), SimFile { durable: bytes, unsynced: Vec::new() });
        state.origin.insert(name.to_string(), creation.clone());
        state.durable_names.insert(name.to_string(), creation);
    }
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct SimHandle {
    storage: SimStorage,
    creation: String,
}

impl SimHandle {
    fn with_file<T>(&self, f: impl FnOnce(&mut SimFile) -> T) -> io::Result<T> {
        let mut state = self.storage.state();
        let name = state.origin.iter().find(|(_, c)| **c == self.creation).map(|(n, _)| n.clone());
        let file = name.and_then(|n| state.files.get_mut(&n)).ok_or_else(|| io::Error::other("file was removed"))?;
        Ok(f(file))
    }
}

impl StorageFile for SimHandle {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let (fail, budget) = {
            let state = self.storage.state();
            (state.fail_writes.clone(), state.write_budget)
        };
        if let Some(message) = fail {
            return Err(io::Error::other(message));
        }
        if let Some(budget) = budget
            && bytes.len() > budget
        {
            self.with_file(|f| f.unsynced.extend_from_slice(&bytes[..budget]))?;
            let mut state = self.storage.state();
            state.write_budget = None;
            state.fail_writes = Some("no space left on device (simulated)".to_string());
            return Err(io::Error::other("no space left on device (simulated, after a short write)"));
        }
        if let Some(budget) = budget {
            self.storage.state().write_budget = Some(budget - bytes.len());
        }
        self.with_file(|f| f.unsynced.extend_from_slice(bytes))
    }

    fn sync_data(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.storage.state().fail_next_sync) {
            return Err(io::Error::other("I/O error during fdatasync (simulated)"));
        }
        self.with_file(|f| {
            let unsynced = std::mem::take(&mut f.unsynced);
            f.durable.extend_from_slice(&unsynced);
        })?;
        self.storage.state().syncs += 1;
        Ok(())
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{name}: no such file"))
}

/// Counts creations so each gets a distinct identity.
static CREATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Storage for SimStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.state().files.keys().cloned().collect())
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.contents(name).ok_or_else(|| not_found(name))
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let creation = format!("{name}#{}", CREATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        {
            let mut state = self.state();
            state.files.insert(name.to_string(), SimFile::default());
            state.origin.insert(name.to_string(), creation.clone());
        }
        Ok(Box::new(SimHandle { storage: self.clone(), creation }))
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let creation = self.state().origin.get(name).cloned().ok_or_else(|| not_found(name))?;
        Ok(Box::new(SimHandle { storage: self.clone(), creation }))
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let mut state = self.state();
        let file = state.files.get_mut(name).ok_or_else(|| not_found(name))?;
        let mut all = [file.durable.as_slice(), file.unsynced.as_slice()].concat();
        all.truncate(len as usize);
        *file = SimFile { durable: all, unsynced: Vec::new() };
        state.syncs += 1;
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.state();
        let file = state.files.remove(from).ok_or_else(|| not_found(from))?;
        let creation = state.origin.remove(from).unwrap_or_default();
        state.files.insert(to.to_string(), file);
        state.origin.insert(to.to_string(), creation);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut state = self.state();
        state.files.remove(name).ok_or_else(|| not_found(name))?;
        state.origin.remove(name);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut state = self.state();
        state.durable_names = state.origin.clone();
        state.syncs += 1;
        Ok(())
    }

    fn describe(&self, name: &str) -> String {
        format!("sim:{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_keeps_exactly_what_was_synced() {
        let storage = SimStorage::new();
        let mut file = storage.create("a").unwrap();
        file.write_all(b"hello ").unwrap();
        // Not in the directory durably yet: a crash loses the file.
        assert!(storage.crash(CrashMode::LoseUnsynced).list().unwrap().is_empty());
        storage.sync_dir().unwrap();
        file.sync_data().unwrap();
        file.write_all(b"world").unwrap();
        let after = storage.crash(CrashMode::LoseUnsynced);
        assert_eq!(after.read("a").unwrap(), b"hello ");
        let torn = storage.crash(CrashMode::KeepPrefix { keep: 2 });
        assert_eq!(torn.read("a").unwrap(), b"hello wo");
        let junk = storage.crash(CrashMode::Garbage { keep: 1, garbage: 3, seed: 9 });
        assert_eq!(junk.read("a").unwrap().len(), 6 + 1 + 3);
        // Pages of 4 bytes: "hell|o wo|rld"; "o " is durable, "wo" and "rld" not.
        let mut outcomes = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let bytes = storage.crash(CrashMode::RandomPages { page: 4, seed }).read("a").unwrap();
            assert!(bytes.starts_with(b"hello "), "the synced bytes are kept: {bytes:?}");
            outcomes.insert(bytes);
        }
        let expected: Vec<&[u8]> = vec![b"hello ", b"hello \0\0rld", b"hello wo", b"hello world"];
        assert_eq!(outcomes.iter().map(Vec::as_slice).collect::<Vec<_>>(), expected);
        // A rename is only durable after sync_dir.
        storage.rename("a", "b").unwrap();
        assert_eq!(storage.crash(CrashMode::LoseUnsynced).list().unwrap(), vec!["a".to_string()]);
        storage.sync_dir().unwrap();
        assert_eq!(storage.crash(CrashMode::LoseUnsynced).list().unwrap(), vec!["b".to_string()]);
    }

    #[test]
    fn a_directory_is_locked_while_open() {
        let dir = std::env::temp_dir().join(format!("mx-storage-lock-{}", std::process::id()));
        let first = FsStorage::open(&dir).unwrap();
        let error = FsStorage::open(&dir).unwrap_err();
        assert!(error.to_string().contains("in use"), "{error}");
        drop(first);
        FsStorage::open(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_new_data_directory_is_created_with_its_parents() {
        let root = std::env::temp_dir().join(format!("mx-storage-nested-{}", std::process::id()));
        let dir = root.join("a").join("b");
        let storage = FsStorage::open(&dir).unwrap();
        assert!(dir.join(LOCK_FILE).exists());
        drop(storage);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn fs_storage_round_trips() {
        let dir = std::env::temp_dir().join(format!("mx-storage-{}", std::process::id()));
        let storage = FsStorage::open(&dir).unwrap();
        let mut file = storage.create("x").unwrap();
        file.write_all(b"abc").unwrap();
        file.sync_data().unwrap();
        storage.sync_dir().unwrap();
        let mut file = storage.open_append("x").unwrap();
        file.write_all(b"def").unwrap();
        assert_eq!(storage.read("x").unwrap(), b"abcdef");
        storage.truncate("x", 4).unwrap();
        storage.rename("x", "y").unwrap();
        assert_eq!(storage.list().unwrap(), vec!["y".to_string()]);
        assert_eq!(storage.read("y").unwrap(), b"abcd");
        storage.remove("y").unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
