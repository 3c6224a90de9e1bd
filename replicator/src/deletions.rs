//! The deletion index: every deletion the change log holds (its offset,
//! path patterns and time range), so a pipe never ships a point that the
//! edge had deleted before the pipe read it (DESIGN invariant 12).
//!
//! A tablet a pipe reads at offset `o` is filtered by every deletion at an
//! offset above `o` that the log held when the pipe read it. The pipe has
//! not read those records yet (they lie ahead of it), so it asks this
//! index, which knows them without reading the log:
//!
//! - The node records each deletion here as it logs it
//!   ([`Deletions::record`]), holding the index's lock across the append.
//!   A pipe takes its [`DeletionView`] under the same lock, after reading
//!   its batch from the log, so the view holds every deletion logged before
//!   the batch was read. `DELETE DATABASE db` is the deletion of `db.**`
//!   over all time.
//! - The index is persisted (`deletions.json`, replaced atomically) about
//!   every second while the log grows, and at close, with `complete_to`:
//!   every deletion below that offset is in the file. After a crash, open
//!   reads the log from `complete_to` to its end for the deletion records
//!   the file does not hold yet, so a crash between logging a deletion and
//!   persisting the index lets no deleted point through. Records at or
//!   past the recovered log end (a torn tail) are dropped; records below
//!   the log start (retention deleted everything they could filter) are
//!   pruned.
//! - A deletion record a pipe meets in the log that the index lacks (a
//!   writer that did not go through [`Deletions::record`]) is added when
//!   met, with a warning: pipes reading behind it are filtered from then on.
//!
//! Deletions are rare. A pipe's fast path, a tablet shipped as the bytes
//! read from the log, stays when no deletion above the tablet's offset can
//! match its device: that costs a binary search and, only when deletions
//! lie ahead, a look at the device string.
//!
//! ```text
//! deletions.json: { "complete_to": u64,
//!                   "records": [ { "offset": u64, "patterns": [String],
//!                                  "min": i64, "max": i64 } ] }   (offset order)
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use protocol::event::{Event, SchemaOp, KIND_DELETE, KIND_SCHEMA};
use protocol::tablet::Tablet;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// One deletion in the change log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionRecord {
    /// The offset of the delete record.
    pub offset: u64,
    /// Path patterns (`root.sg.d.s`, `root.sg.**`).
    pub patterns: Vec<String>,
    /// Smallest time deleted.
    pub min: i64,
    /// Largest time deleted.
    pub max: i64,
}

impl DeletionRecord {
    /// The deletion a change-log record makes, if it is one: a delete, or
    /// `DELETE DATABASE db` as `db.**` over all time.
    ///
    /// # Errors
    /// A delete or schema record that does not decode.
    pub fn of_record(offset: u64, kind: u8, payload: &[u8]) -> Result<Option<Self>, String> {
        // Received deletions (marked FROM_PIPE) delete alike.
        let base = protocol::event::base_kind(kind);
        if base != KIND_DELETE && base != KIND_SCHEMA {
            return Ok(None);
        }
        Ok(match Event::decode(kind, payload)? {
            Event::Delete { patterns, min, max } => Some(DeletionRecord {
                offset,
                patterns,
                min,
                max,
            }),
            Event::Schema(SchemaOp::DeleteDatabase(db)) => Some(DeletionRecord {
                offset,
                patterns: vec![format!("{db}.**")],
                min: i64::MIN,
                max: i64::MAX,
            }),
            _ => None,
        })
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    complete_to: u64,
    records: Vec<DeletionRecord>,
}

#[derive(Debug)]
struct State {
    /// In offset order; replaced (copy on write) when one is added.
    records: Arc<Vec<DeletionRecord>>,
    /// What the file holds: every deletion below it is in the file.
    persisted_to: u64,
    /// Whether records changed since the last save.
    dirty: bool,
}

/// The deletion index of a node's change log (see the module doc).
pub struct Deletions {
    log: Arc<wal::Log>,
    path: PathBuf,
    state: Mutex<State>,
    /// Held while writing the file, so saves do not reorder.
    saving: Mutex<()>,
}

impl std::fmt::Debug for Deletions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deletions")
            .field("path", &self.path)
            .finish()
    }
}

/// The deletions a pipe filters one batch by: those the log held when the
/// pipe read the batch.
#[derive(Debug, Clone, Default)]
pub struct DeletionView {
    records: Arc<Vec<DeletionRecord>>,
}

impl Deletions {
    /// Opens the index of `log` kept in `dir/deletions.json`, and adds
    /// the deletions the log holds past the file's `complete_to` (what a
    /// crash left unindexed).
    ///
    /// # Errors
    /// An unreadable or damaged index file (named), or a log that cannot be
    /// read where the index must catch up.
    pub fn open(log: Arc<wal::Log>, dir: &Path) -> Result<Deletions, String> {
        let path = dir.join("deletions.json");
        let mut p: Persisted = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                format!(
                    "{}: the deletion index does not decode ({e}); remove it to rebuild it from the change log",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let (start, end) = (log.log_start(), log.end_offset());
        // A torn tail: offsets past the recovered end will be reused.
        p.records.retain(|r| r.offset < end);
        let from = p.complete_to.clamp(start, end);
        let mut added = 0;
        if from < end {
            let mut reader = log.reader(from).map_err(|e| {
                format!("deletion index: cannot read the change log at {from}: {e}")
            })?;
            while let Some(batch) = reader
                .try_next()
                .map_err(|e| format!("deletion index: reading the change log: {e}"))?
            {
                for rec in batch.iter() {
                    if rec.offset >= end {
                        break;
                    }
                    let found = DeletionRecord::of_record(rec.offset, rec.kind, rec.payload)
                        .map_err(|e| {
                            format!(
                                "deletion index: change log record {} does not decode: {e}",
                                rec.offset
                            )
                        })?;
                    if let Some(d) = found {
                        if !p.records.iter().any(|r| r.offset == d.offset) {
                            p.records.push(d);
                            added += 1;
                        }
                    }
                }
            }
            info!(
                from,
                to = end,
                added,
                "deletion index caught up with the change log"
            );
        }
        p.records.sort_by_key(|r| r.offset);
        let d = Deletions {
            log,
            path,
            state: Mutex::new(State {
                records: Arc::new(p.records),
                persisted_to: from,
                dirty: true,
            }),
            saving: Mutex::new(()),
        };
        d.save()?;
        Ok(d)
    }

    /// Logs a deletion with `append` (which returns the record's offset)
    /// and records it, under the index's lock: a pipe's view taken after
    /// `append` returned holds it. Every writer of deletions to the log
    /// goes through here. `DELETE DATABASE db` is recorded as
    /// `patterns = [db.**]` over all time.
    ///
    /// # Errors
    /// `append`'s error; nothing is recorded then.
    pub fn record<E>(
        &self,
        patterns: Vec<String>,
        min: i64,
        max: i64,
        append: impl FnOnce() -> Result<u64, E>,
    ) -> Result<u64, E> {
        let mut st = self.state.lock().expect("deletion index");
        let offset = append()?;
        insert(
            &mut st,
            DeletionRecord {
                offset,
                patterns,
                min,
                max,
            },
        );
        Ok(offset)
    }

    /// Adds a deletion a pipe met in the log that the index lacks (a writer
    /// that bypassed [`Deletions::record`]).
    pub(crate) fn observe(&self, d: DeletionRecord) {
        let mut st = self.state.lock().expect("deletion index");
        if !st.records.iter().any(|r| r.offset == d.offset) {
            warn!(
                offset = d.offset,
                "a deletion was logged without the deletion index; pipes reading before it are filtered from now on"
            );
            insert(&mut st, d);
        }
    }

    /// The deletions the log holds now, for one batch a pipe has just read.
    pub fn view(&self) -> DeletionView {
        DeletionView {
            records: self.state.lock().expect("deletion index").records.clone(),
        }
    }

    /// Persists the index if the log or the records moved since the last
    /// save: every deletion below the log end is recorded (they all went
    /// through [`Deletions::record`]), so the file's `complete_to` is the
    /// end. Records below the log start are pruned.
    ///
    /// # Errors
    /// I/O errors, naming the file.
    pub fn save(&self) -> Result<(), String> {
        let _saving = self.saving.lock().expect("deletion index save");
        let (p, end) = {
            let mut st = self.state.lock().expect("deletion index");
            let end = self.log.end_offset();
            if end == st.persisted_to && !st.dirty {
                return Ok(());
            }
            let start = self.log.log_start();
            if st.records.first().is_some_and(|r| r.offset < start) {
                let kept: Vec<DeletionRecord> = st
                    .records
                    .iter()
                    .filter(|r| r.offset >= start)
                    .cloned()
                    .collect();
                st.records = Arc::new(kept);
            }
            st.dirty = false;
            (
                Persisted {
                    complete_to: end,
                    records: st.records.as_ref().clone(),
                },
                end,
            )
        };
        let bytes = serde_json::to_vec(&p).expect("serialize the deletion index");
        if let Err(e) = crate::meta::write_atomically(&self.path, &bytes) {
            self.state.lock().expect("deletion index").dirty = true;
            return Err(e);
        }
        let mut st = self.state.lock().expect("deletion index");
        st.persisted_to = st.persisted_to.max(end);
        Ok(())
    }
}

fn insert(st: &mut State, d: DeletionRecord) {
    let mut v = st.records.as_ref().clone();
    let at = v.partition_point(|r| r.offset < d.offset);
    v.insert(at, d);
    st.records = Arc::new(v);
    st.dirty = true;
}

/// A path pattern split into nodes, matched as IoTDB does: `*` is one
/// node, `**` one or more.
#[derive(Debug)]
struct Pattern<'a>(Vec<&'a str>);

impl<'a> Pattern<'a> {
    fn new(p: &'a str) -> Pattern<'a> {
        Pattern(protocol::names::split_nodes(p).unwrap_or_else(|_| p.split('.').collect()))
    }

    /// The automaton's states after `nodes` (bit `i`: the first `i`
    /// pattern nodes matched); 0 when nothing can match any more.
    fn run<'n>(&self, start: u128, nodes: impl IntoIterator<Item = &'n str>) -> u128 {
        let p = &self.0;
        let mut active = start;
        for node in nodes {
            let mut next: u128 = 0;
            let mut a = active;
            while a != 0 {
                let i = a.trailing_zeros() as usize;
                a &= a - 1;
                match p.get(i) {
                    None => {}
                    Some(&"**") => next |= (1 << i) | (1 << (i + 1)),
                    Some(&"*") => next |= 1 << (i + 1),
                    Some(x) if *x == node => next |= 1 << (i + 1),
                    Some(_) => {}
                }
            }
            if next == 0 {
                return 0;
            }
            active = next;
        }
        active
    }

    /// Whether a series `device.m` can match, for some measurement `m`.
    fn may_match_under(&self, device: &[&str]) -> bool {
        if self.0.is_empty() {
            return false;
        }
        if self.0.len() >= 127 {
            return true; // beyond the automaton's width: filter by series
        }
        let a = self.run(1, device.iter().copied());
        a != 0 && a & (1 << (self.0.len() - 1)) != 0
    }

    /// Whether the series `device.measurement` matches.
    fn matches(&self, device: &[&str], measurement: &str) -> bool {
        if self.0.len() >= 127 {
            return false;
        }
        let a = self.run(1, device.iter().copied().chain([measurement]));
        a & (1 << self.0.len()) != 0
    }
}

impl DeletionView {
    /// A view of exactly these records (tests, tools).
    pub fn of(mut records: Vec<DeletionRecord>) -> DeletionView {
        records.sort_by_key(|r| r.offset);
        DeletionView {
            records: Arc::new(records),
        }
    }

    /// Whether the view holds a deletion at `offset`.
    pub fn has(&self, offset: u64) -> bool {
        self.records
            .binary_search_by_key(&offset, |r| r.offset)
            .is_ok()
    }

    /// The deletions logged after `offset`.
    fn after(&self, offset: u64) -> &[DeletionRecord] {
        let at = self.records.partition_point(|r| r.offset <= offset);
        &self.records[at..]
    }

    /// Whether a deletion logged after `offset` may delete points of
    /// `device` (a look at the patterns only).
    pub fn may_apply(&self, offset: u64, device: &str) -> bool {
        let after = self.after(offset);
        if after.is_empty() {
            return false;
        }
        let nodes = split(device);
        after
            .iter()
            .flat_map(|r| &r.patterns)
            .any(|p| Pattern::new(p).may_match_under(&nodes))
    }

    /// As [`DeletionView::may_apply`], asking for the device only when a
    /// deletion lies after `offset` (the fast path reads nothing).
    ///
    /// # Errors
    /// `device`'s error.
    pub fn may_apply_to(
        &self,
        offset: u64,
        device: impl FnOnce() -> Result<String, String>,
    ) -> Result<bool, String> {
        if self.after(offset).is_empty() {
            return Ok(false);
        }
        Ok(self.may_apply(offset, &device()?))
    }

    /// Removes from `t` (read at `offset`) every point a deletion logged
    /// after it deleted: each such cell becomes null, then rows and
    /// columns left without a value go. `None` when nothing is left.
    pub fn apply(&self, offset: u64, mut t: Tablet) -> Option<Tablet> {
        let after = self.after(offset);
        if after.is_empty() {
            return Some(t);
        }
        let device = t.device.clone();
        let nodes = split(&device);
        let rows = t.rows();
        let mut touched = false;
        for c in 0..t.columns.len() {
            let ranges: Vec<(i64, i64)> = after
                .iter()
                .filter(|r| {
                    r.patterns
                        .iter()
                        .any(|p| Pattern::new(p).matches(&nodes, &t.measurements[c]))
                })
                .map(|r| (r.min, r.max))
                .collect();
            if ranges.is_empty() {
                continue;
            }
            for r in 0..rows {
                let time = t.times[r];
                if ranges.iter().any(|&(lo, hi)| lo <= time && time <= hi) {
                    t.nulls[c].get_or_insert_with(|| vec![false; rows])[r] = true;
                    touched = true;
                }
            }
        }
        if !touched {
            return Some(t);
        }
        let is_null = |t: &Tablet, c: usize, r: usize| t.nulls[c].as_ref().is_some_and(|n| n[r]);
        let keep_cols: Vec<usize> = (0..t.columns.len())
            .filter(|&c| (0..rows).any(|r| !is_null(&t, c, r)))
            .collect();
        let keep_rows: Vec<usize> = (0..rows)
            .filter(|&r| keep_cols.iter().any(|&c| !is_null(&t, c, r)))
            .collect();
        if keep_rows.is_empty() {
            return None;
        }
        Some(Tablet {
            device: t.device.clone(),
            measurements: keep_cols
                .iter()
                .map(|&c| t.measurements[c].clone())
                .collect(),
            columns: keep_cols
                .iter()
                .map(|&c| t.columns[c].gather(&keep_rows))
                .collect(),
            nulls: keep_cols
                .iter()
                .map(|&c| {
                    t.nulls[c].as_ref().and_then(|n| {
                        let v: Vec<bool> = keep_rows.iter().map(|&r| n[r]).collect();
                        v.contains(&true).then_some(v)
                    })
                })
                .collect(),
            times: keep_rows.iter().map(|&r| t.times[r]).collect(),
            aligned: t.aligned,
        })
    }
}

fn split(path: &str) -> Vec<&str> {
    protocol::names::split_nodes(path).unwrap_or_else(|_| path.split('.').collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::tablet::Column;
    use protocol::types::Value;

    fn del(offset: u64, p: &str, min: i64, max: i64) -> DeletionRecord {
        DeletionRecord {
            offset,
            patterns: vec![p.into()],
            min,
            max,
        }
    }

    fn tablet() -> Tablet {
        Tablet {
            device: "root.sg.d".into(),
            measurements: vec!["a".into(), "b".into()],
            columns: vec![
                Column::Int64(vec![1, 2, 3]),
                Column::Double(vec![1.0, 2.0, 3.0]),
            ],
            nulls: vec![None, None],
            times: vec![1, 2, 3],
            aligned: false,
        }
    }

    #[test]
    fn patterns_match_as_iotdb() {
        let d = ["root", "sg", "d"];
        assert!(Pattern::new("root.sg.d.a").matches(&d, "a"));
        assert!(!Pattern::new("root.sg.d.a").matches(&d, "b"));
        assert!(Pattern::new("root.sg.**").matches(&d, "b"));
        assert!(Pattern::new("root.*.d.*").matches(&d, "b"));
        assert!(!Pattern::new("root.*.a").matches(&d, "a"));
        assert!(Pattern::new("root.**.a").matches(&d, "a"));
        assert!(Pattern::new("root.sg.d.a").may_match_under(&d));
        assert!(Pattern::new("root.**").may_match_under(&d));
        assert!(!Pattern::new("root.sg").may_match_under(&d));
        assert!(!Pattern::new("root.sg.d").may_match_under(&d));
        assert!(!Pattern::new("root.other.**").may_match_under(&d));
        assert!(!Pattern::new("root.sg.d.a.b").may_match_under(&d));
        // Backquoted nodes are compared in their written form.
        let q = ["root", "sg", "`a.b`"];
        assert!(Pattern::new("root.sg.`a.b`.x").matches(&q, "x"));
    }

    #[test]
    fn only_later_deletions_apply() {
        let v = DeletionView::of(vec![del(5, "root.sg.d.a", 2, 2)]);
        assert!(v.may_apply(4, "root.sg.d"));
        assert!(!v.may_apply(5, "root.sg.d"));
        assert!(!v.may_apply(4, "root.sg.e"));
        assert_eq!(v.apply(7, tablet()), Some(tablet()));
        let t = v.apply(4, tablet()).unwrap();
        assert_eq!(t.times, [1, 2, 3]);
        assert!(t.is_null(0, 1) && !t.is_null(0, 0) && !t.is_null(1, 1));
        assert_eq!(t.columns[1].get(1), Value::Double(2.0));
    }

    #[test]
    fn emptied_rows_columns_and_tablets_go() {
        let v = DeletionView::of(vec![
            del(9, "root.sg.**", 1, 2),
            del(8, "root.sg.d.b", 3, 3),
        ]);
        let t = v.apply(1, tablet()).unwrap();
        assert_eq!(t.times, [3]);
        assert_eq!(t.measurements, ["a"]);
        assert_eq!(t.nulls, [None]);
        let all = DeletionView::of(vec![del(9, "root.sg.**", i64::MIN, i64::MAX)]);
        assert_eq!(all.apply(1, tablet()), None);
    }

    #[test]
    fn recorded_persisted_and_caught_up_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = wal::Config {
            fsync: wal::FsyncPolicy::Never,
            segment_bytes: 1 << 20,
            ..wal::Config::default()
        };
        let log = Arc::new(wal::Log::open(dir.path().join("wal"), cfg.clone()).unwrap());
        let sys = dir.path().join("system");
        std::fs::create_dir_all(&sys).unwrap();
        let d = Deletions::open(log.clone(), &sys).unwrap();
        let del_ev = |db: &str| Event::Schema(SchemaOp::DeleteDatabase(db.into())).encode();
        let tab = Event::Tablet(tablet()).encode();
        log.append(tab.0, &tab.1).unwrap();
        // Through the index.
        let (k, p) = del_ev("root.a");
        let off = d
            .record(vec!["root.a.**".into()], i64::MIN, i64::MAX, || {
                log.append(k, &p).map_err(|e| e.to_string())
            })
            .unwrap();
        assert!(d.view().has(off));
        d.save().unwrap();
        // Logged but never indexed (as a crash right after the append).
        let (k, p) = Event::Delete {
            patterns: vec!["root.sg.d.a".into()],
            min: 2,
            max: 2,
        }
        .encode();
        let lost = log.append(k, &p).unwrap();
        let (k, p) = del_ev("root.b");
        let lost2 = log.append(k, &p).unwrap();
        drop(d);
        let d = Deletions::open(log.clone(), &sys).unwrap();
        let v = d.view();
        assert!(v.has(off) && v.has(lost) && v.has(lost2));
        assert!(v.may_apply(0, "root.sg.d"));
        assert!(v.may_apply(0, "root.b.x"));
        assert!(!v.may_apply(lost2, "root.b.x"));
        // A damaged file is named.
        std::fs::write(sys.join("deletions.json"), b"{").unwrap();
        let e = Deletions::open(log, &sys).unwrap_err();
        assert!(
            e.contains("deletions.json") && e.contains("remove it"),
            "{e}"
        );
    }
}
