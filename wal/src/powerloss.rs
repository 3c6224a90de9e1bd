//! A model of what survives a power cut, for tests. It is dormant until a
//! test calls [`watch`]: every hook then costs one atomic load, next to
//! the sync it follows.
//!
//! A process crash (SIGKILL) keeps the page cache: what the process wrote
//! reaches the disk later whether it synced or not, so a kill -9 test
//! passes with every sync removed. A power cut keeps only what was synced.
//! This module records, for each watched directory, what the disk holds
//! after every sync the log makes:
//!
//! - an `fsync` of a file makes its whole content durable;
//! - an `msync` of a range makes that range durable (from the start of its
//!   first page: the kernel syncs whole pages, and the bytes before the
//!   range in that page were durable already);
//! - an `fsync` of the directory makes its entries (names and the files
//!   they point to) durable; until then a new, renamed or unlinked name is
//!   not, and a file whose content was never synced is empty.
//!
//! Nothing else is durable: the model keeps the harshest outcome of a
//! power cut at each moment. A test replays the recorded events
//! (`History::images`) and checks the log recovers what it reported
//! durable from the disk as it was after each one: a cut at every sync.
//!
//! Each sync is named by its *site*, the line of the log's code that asked
//! for it (the syncing functions are `#[track_caller]`) plus what it synced.
//! `skip` stops one site from counting, as if that sync were missing from
//! the code: a test can show that every sync matters.

pub use model::*;

mod model {
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::ffi::OsString;
    use std::fs::File;
    use std::os::unix::fs::{FileExt, MetadataExt};
    use std::panic::Location;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    /// An inode and its generation (bumped when the log creates a file, so
    /// a reused inode number starts empty).
    type Key = (u64, u64);

    /// What a directory durably holds: names and file contents.
    #[derive(Debug, Clone, Default)]
    struct Durable {
        entries: BTreeMap<OsString, Key>,
        contents: HashMap<Key, Vec<u8>>,
    }

    #[derive(Debug, Clone)]
    enum Change {
        /// Bytes `[at, at + bytes.len())` of a file, whose length is `len`.
        Content {
            key: Key,
            at: u64,
            len: u64,
            bytes: Vec<u8>,
        },
        /// The directory's entries.
        Entries(BTreeMap<OsString, Key>),
    }

    #[derive(Debug, Clone)]
    struct Event {
        site: String,
        change: Change,
    }

    #[derive(Debug)]
    struct Model {
        dir: PathBuf,
        generation: HashMap<u64, u64>,
        initial: Durable,
        events: Vec<Event>,
        sites: BTreeSet<String>,
        skip: Option<String>,
        /// `(events recorded when it returned, file name, content)` of each
        /// atomic replace (`None`: the file was unlinked).
        replaced: Vec<(usize, OsString, Option<Vec<u8>>)>,
    }

    static ACTIVE: AtomicBool = AtomicBool::new(false);
    static MODELS: Mutex<Vec<Model>> = Mutex::new(Vec::new());

    fn models() -> std::sync::MutexGuard<'static, Vec<Model>> {
        MODELS.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_model(dir: &Path, f: impl FnOnce(&mut Model)) {
        if !ACTIVE.load(Ordering::Acquire) {
            return;
        }
        let mut m = models();
        if let Some(model) = m.iter_mut().find(|m| m.dir == dir) {
            f(model);
        }
    }

    fn parent(path: &Path) -> &Path {
        path.parent().unwrap_or(Path::new("."))
    }

    fn name(path: &Path) -> OsString {
        path.file_name().unwrap_or_default().to_os_string()
    }

    impl Model {
        fn key(&self, ino: u64) -> Key {
            (ino, self.generation.get(&ino).copied().unwrap_or(0))
        }

        /// Records `change` from `site`, unless the site is skipped.
        fn record(&mut self, site: String, change: Change) {
            self.sites.insert(site.clone());
            if self.skip.as_deref() == Some(site.as_str()) {
                return;
            }
            self.events.push(Event { site, change });
        }

        fn entries(&self) -> BTreeMap<OsString, Key> {
            let mut out = BTreeMap::new();
            if let Ok(rd) = std::fs::read_dir(&self.dir) {
                for e in rd.flatten() {
                    if let Ok(md) = e.metadata() {
                        if md.is_file() {
                            out.insert(e.file_name(), self.key(md.ino()));
                        }
                    }
                }
            }
            out
        }
    }

    fn site(loc: &Location<'_>, what: &str, how: &str) -> String {
        let file = loc.file().rsplit('/').next().unwrap_or(loc.file());
        format!("{file}:{}: {what} {how}", loc.line())
    }

    /// Starts modelling `dir` (a flat directory): what it holds now counts
    /// as durable. Replaces an earlier model of the same directory (its
    /// recorded events go; the sites seen and the skipped one stay).
    pub fn watch(dir: &Path) {
        let mut m = Model {
            dir: dir.to_path_buf(),
            generation: HashMap::new(),
            initial: Durable::default(),
            events: Vec::new(),
            sites: BTreeSet::new(),
            skip: None,
            replaced: Vec::new(),
        };
        m.initial.entries = m.entries();
        for (n, k) in &m.initial.entries {
            let bytes = std::fs::read(dir.join(n)).unwrap_or_default();
            m.initial.contents.insert(*k, bytes);
        }
        let mut all = models();
        if let Some(old) = all.iter().position(|x| x.dir == dir) {
            let old = all.remove(old);
            m.sites = old.sites;
            m.skip = old.skip;
        }
        all.push(m);
        ACTIVE.store(true, Ordering::Release);
    }

    /// Stops modelling `dir`.
    pub fn unwatch(dir: &Path) {
        models().retain(|x| x.dir != dir);
    }

    /// Makes syncs from `site` (as [`History::sites`] names them) not count
    /// in `dir`, as if that sync were missing from the code; `None` counts
    /// them all again.
    pub fn skip(dir: &Path, site: Option<&str>) {
        with_model(dir, |m| m.skip = site.map(str::to_string));
    }

    /// How many syncs of `dir` were recorded so far: a claim of durability
    /// made now must hold after a cut at any later event.
    pub fn events(dir: &Path) -> usize {
        let mut n = 0;
        with_model(dir, |m| n = m.events.len());
        n
    }

    /// Everything recorded for `dir`.
    pub fn history(dir: &Path) -> History {
        let mut h = None;
        with_model(dir, |m| {
            h = Some(History {
                initial: m.initial.clone(),
                events: m.events.clone(),
                sites: m.sites.clone(),
                replaced: m.replaced.clone(),
            })
        });
        h.unwrap_or_else(|| panic!("{} is not watched", dir.display()))
    }

    /// The recorded syncs of one directory.
    #[derive(Debug, Clone)]
    pub struct History {
        initial: Durable,
        events: Vec<Event>,
        sites: BTreeSet<String>,
        replaced: Vec<(usize, OsString, Option<Vec<u8>>)>,
    }

    /// What the directory held after a cut right after event `event`.
    #[derive(Debug, Clone)]
    pub struct Image {
        /// Events applied (0: as at `watch`).
        pub event: usize,
        /// The site of the last event applied.
        pub site: String,
        /// File names and contents.
        pub files: BTreeMap<OsString, Vec<u8>>,
        /// Files whose atomic replace had returned by then: each must hold
        /// one of these contents (what the last replace that returned
        /// wrote, or what a later one, still under way, writes).
        pub replaced: BTreeMap<OsString, Vec<Vec<u8>>>,
    }

    impl Image {
        /// Writes the image into `dir` (which should be empty).
        ///
        /// # Panics
        /// On I/O errors.
        pub fn materialize(&self, dir: &Path) {
            for (n, b) in &self.files {
                std::fs::write(dir.join(n), b).expect("write image file");
            }
        }

        /// Files whose atomic replace had returned but that do not hold its
        /// content in this image.
        pub fn broken_replacements(&self) -> Vec<String> {
            self.replaced
                .iter()
                .filter(|(n, ok)| !self.files.get(*n).is_some_and(|f| ok.contains(f)))
                .map(|(n, _)| n.to_string_lossy().into_owned())
                .collect()
        }
    }

    impl History {
        /// Every sync site seen (also the skipped one).
        pub fn sites(&self) -> &BTreeSet<String> {
            &self.sites
        }

        /// Number of events.
        pub fn len(&self) -> usize {
            self.events.len()
        }

        /// Never true after a log was opened in the directory.
        pub fn is_empty(&self) -> bool {
            self.events.is_empty()
        }

        /// The directory after a cut at each event, in order, starting with
        /// the state at `watch`.
        pub fn images(&self) -> impl Iterator<Item = Image> + '_ {
            let mut d = self.initial.clone();
            let mut replaced: BTreeMap<OsString, Vec<u8>> = BTreeMap::new();
            let mut r = 0;
            (0..=self.events.len()).map(move |i| {
                let mut site = String::from("(watch)");
                if i > 0 {
                    let e = &self.events[i - 1];
                    site = e.site.clone();
                    match &e.change {
                        Change::Content {
                            key,
                            at,
                            len,
                            bytes,
                        } => {
                            let c = d.contents.entry(*key).or_default();
                            c.resize(*len as usize, 0);
                            let end = (*at as usize + bytes.len()).min(c.len());
                            let at = (*at as usize).min(end);
                            c[at..end].copy_from_slice(&bytes[..end - at]);
                        }
                        Change::Entries(e) => d.entries = e.clone(),
                    }
                }
                while r < self.replaced.len() && self.replaced[r].0 <= i {
                    let (_, n, b) = &self.replaced[r];
                    match b {
                        Some(b) => replaced.insert(n.clone(), b.clone()),
                        None => replaced.remove(n),
                    };
                    r += 1;
                }
                let files = d
                    .entries
                    .iter()
                    .map(|(n, k)| (n.clone(), d.contents.get(k).cloned().unwrap_or_default()))
                    .collect();
                let mut allowed: BTreeMap<OsString, Vec<Vec<u8>>> = replaced
                    .iter()
                    .map(|(n, b)| (n.clone(), vec![b.clone()]))
                    .collect();
                for (_, n, b) in &self.replaced[r..] {
                    if let (Some(v), Some(b)) = (allowed.get_mut(n), b) {
                        v.push(b.clone());
                    }
                }
                Image {
                    event: i,
                    site,
                    files,
                    replaced: allowed,
                }
            })
        }
    }

    #[track_caller]
    pub(crate) fn file_synced(file: &File, path: &Path, what: &'static str, how: &'static str) {
        let loc = Location::caller();
        with_model(parent(path), |m| {
            let Ok(md) = file.metadata() else { return };
            let bytes = std::fs::read(path).unwrap_or_default();
            let key = m.key(md.ino());
            let change = Change::Content {
                key,
                at: 0,
                len: bytes.len() as u64,
                bytes,
            };
            m.record(site(loc, what, how), change);
        });
    }

    #[track_caller]
    pub(crate) fn range_synced(
        file: &File,
        path: &Path,
        from: u64,
        to: u64,
        what: &'static str,
        how: &'static str,
    ) {
        let loc = Location::caller();
        with_model(parent(path), |m| {
            let Ok(md) = file.metadata() else { return };
            let from = from & !4095;
            let to = to.min(md.len());
            let mut bytes = vec![0u8; to.saturating_sub(from) as usize];
            if file.read_exact_at(&mut bytes, from).is_err() {
                return;
            }
            let key = m.key(md.ino());
            let change = Change::Content {
                key,
                at: from,
                len: md.len(),
                bytes,
            };
            m.record(site(loc, what, how), change);
        });
    }

    #[track_caller]
    pub(crate) fn dir_synced(dir: &Path, what: &'static str, how: &'static str) {
        let loc = Location::caller();
        with_model(dir, |m| {
            let e = m.entries();
            m.record(site(loc, what, how), Change::Entries(e));
        });
    }

    pub(crate) fn created(path: &Path, file: &File) {
        with_model(parent(path), |m| {
            if let Ok(md) = file.metadata() {
                *m.generation.entry(md.ino()).or_default() += 1;
            }
        });
    }

    pub(crate) fn replaced(path: &Path, bytes: &[u8]) {
        with_model(parent(path), |m| {
            let n = m.events.len();
            m.replaced.push((n, name(path), Some(bytes.to_vec())));
        });
    }

    pub(crate) fn removed(path: &Path) {
        with_model(parent(path), |m| {
            let n = m.events.len();
            m.replaced.push((n, name(path), None));
        });
    }
}
