//! Validating events against the schema and applying them to the
//! in-memory state.
//!
//! A tablet's series paths (`device.measurement`) are built in a buffer
//! the caller keeps across tablets, and looked up by `&str`: no allocation
//! per series unless it is new.

use std::collections::{BTreeSet, HashMap, HashSet};

use protocol::tablet::TabletData;
use protocol::types::{status, DataType};

use super::memtable::Mem;
use super::series_map::Slot;
use super::{
    encoding_name, split, Inner, SResult, Series, SeriesInfo, StoreConfig, StoreError, Tombstone,
};
use crate::event::{Event, SchemaOp};
use crate::sql::Path;

/// The database of `path`: the one of the databases that prefixes it.
pub(super) fn db_of(inner: &Inner, path: &str) -> Option<String> {
    inner
        .databases
        .iter()
        .find(|d| {
            path == d.as_str()
                || (path.starts_with(d.as_str()) && path.as_bytes().get(d.len()) == Some(&b'.'))
        })
        .cloned()
}

fn auto_database(config: &StoreConfig, path: &str) -> Option<String> {
    let nodes = split(path);
    let level = config.default_database_level.max(1);
    (nodes.len() > level + 1).then(|| nodes[..=level].join("."))
}

fn check_series_path(path: &str) -> SResult<()> {
    let ok = if path.contains('`') {
        // Backquoted nodes may hold dots: the store's own split.
        let nodes = split(path);
        nodes.len() >= 3 && nodes[0] == "root" && nodes.iter().all(|n| !n.is_empty())
    } else {
        // The usual path, in one pass without allocating: `root`, then
        // at least two more nodes, none empty.
        path.strip_prefix("root.").is_some_and(|rest| {
            let b = rest.as_bytes();
            let mut dots = 0;
            let mut after_dot = true;
            for &c in b {
                if c == b'.' {
                    if after_dot {
                        return false;
                    }
                    dots += 1;
                    after_dot = true;
                } else {
                    after_dot = false;
                }
            }
            !after_dot && dots >= 1
        })
    };
    if !ok {
        return Err(StoreError::new(status::ILLEGAL_PATH, format!("{path} is not a valid series path: a series needs root, a database and a measurement, e.g. root.sg.d.s")));
    }
    Ok(())
}

/// Puts `device.measurement` in `buf`.
pub(super) fn series_path<'b>(buf: &'b mut String, device: &str, measurement: &str) -> &'b str {
    buf.clear();
    buf.push_str(device);
    buf.push('.');
    buf.push_str(measurement);
    buf
}

/// What tablets earlier in the same request will create, once applied:
/// validating a request's tablets before any of them is logged must see
/// them as writing the tablets one by one would (a series the first tablet
/// creates has the type and alignment it gave it; a database it creates
/// exists).
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// New series: type and alignment.
    series: HashMap<String, (DataType, bool)>,
    /// New databases.
    databases: BTreeSet<String>,
    /// Per column of each tablet checked, in order: the slot of its series
    /// when that exists already, so applying goes there without a second
    /// lookup (while no series was removed: `removals`).
    pub(super) slots: Vec<Option<Slot>>,
    /// [`super::series_map::SeriesMap::removals`] when the slots were
    /// taken.
    pub(super) removals: u64,
}

impl Pending {
    /// Forgets everything: what it held is applied.
    pub(super) fn clear(&mut self) {
        self.series.clear();
        self.databases.clear();
        self.slots.clear();
    }

    fn has_database_of(&self, path: &str) -> bool {
        self.databases.iter().any(|d| {
            path == d.as_str()
                || (path.starts_with(d.as_str()) && path.as_bytes().get(d.len()) == Some(&b'.'))
        })
    }
}

/// Checks a tablet against the schema (and what `pending` says earlier
/// tablets of its request create) without changing the store; records in
/// `pending` what this one creates.
pub(super) fn validate_tablet<T: TabletData>(
    inner: &Inner,
    config: &StoreConfig,
    t: &T,
    mut pending: Option<&mut Pending>,
    buf: &mut String,
) -> SResult<()> {
    let mark = pending.as_ref().map_or(0, |p| p.slots.len());
    let checked = check_tablet(inner, config, t, pending.as_deref_mut(), buf);
    if checked.is_err() {
        // The tablet is not applied: neither are its slots.
        if let Some(p) = pending {
            p.slots.truncate(mark);
        }
    }
    checked
}

fn check_tablet<T: TabletData>(
    inner: &Inner,
    config: &StoreConfig,
    t: &T,
    mut pending: Option<&mut Pending>,
    buf: &mut String,
) -> SResult<()> {
    let (device, aligned_write) = (t.device(), t.aligned());
    if t.width() == 0 {
        return Err(StoreError::new(
            status::ILLEGAL_PARAMETER,
            format!("insert into {device}: no measurements"),
        ));
    }
    // A set only for wide tablets: a few measurements are compared
    // directly, without allocating.
    let mut seen: Option<HashSet<&str>> = (t.width() > 16).then(HashSet::new);
    for i in 0..t.width() {
        let (m, data_type) = (t.measurement(i), t.data_type(i));
        let twice = match &mut seen {
            Some(set) => !set.insert(m),
            None => (0..i).any(|j| t.measurement(j) == m),
        };
        if twice {
            return Err(StoreError::new(
                status::ILLEGAL_PARAMETER,
                format!("insert into {device}: measurement {m} appears twice"),
            ));
        }
        let path = series_path(buf, device, m);
        check_series_path(path)?;
        let slot = inner.series.slot_of(path);
        if let Some(p) = pending.as_deref_mut() {
            p.slots.push(slot);
        }
        let known = match slot.and_then(|i| inner.series.at(i)) {
            Some(s) => Some((s.info.data_type, s.info.aligned)),
            None => pending.as_ref().and_then(|p| p.series.get(path).copied()),
        };
        match known {
            Some((registered, _)) if registered != data_type => {
                return Err(StoreError::new(
                    status::DATA_TYPE_MISMATCH,
                    format!(
                        "data type of {path} is not consistent, registered type {registered}, inserting type {data_type}"
                    ),
                ))
            }
            Some((_, aligned)) if aligned != aligned_write => {
                return Err(StoreError::new(
                    status::METADATA_ERROR,
                    format!(
                        "device {device} is {}aligned, but this insert is {}aligned",
                        if aligned { "" } else { "not " },
                        if aligned_write { "" } else { "not " }
                    ),
                ))
            }
            Some(_) => {}
            None if !config.auto_create_schema => {
                return Err(StoreError::new(status::PATH_NOT_EXIST, format!("series {path} does not exist and automatic schema creation is off (enable_auto_create_schema=false); create it first")));
            }
            None => {
                let has_db = db_of(inner, path).is_some()
                    || pending.as_ref().is_some_and(|p| p.has_database_of(path));
                let auto = if has_db {
                    None
                } else {
                    match auto_database(config, path) {
                        Some(db) => Some(db),
                        None => return Err(StoreError::new(status::DATABASE_NOT_EXIST, format!("no database for {path} and it is too short to make one at level {}", config.default_database_level))),
                    }
                };
                if let Some(p) = pending.as_deref_mut() {
                    p.series
                        .insert(path.to_string(), (data_type, aligned_write));
                    p.databases.extend(auto);
                }
            }
        }
    }
    Ok(())
}

/// Checks an event against the schema without changing anything.
pub(super) fn validate(inner: &Inner, config: &StoreConfig, ev: &Event) -> SResult<()> {
    match ev {
        Event::Tablet(t) => validate_tablet(inner, config, t, None, &mut String::new()),
        Event::Delete { .. } => Ok(()),
        Event::Schema(SchemaOp::CreateDatabase(p)) => {
            let nodes = split(p);
            if nodes.len() < 2 || nodes[0] != "root" {
                return Err(StoreError::new(
                    status::ILLEGAL_PATH,
                    format!("{p} is not a valid database path, e.g. root.sg"),
                ));
            }
            if inner.databases.contains(p) {
                return Err(StoreError::new(
                    status::DATABASE_ALREADY_EXISTS,
                    format!("{p} has already been created as database"),
                ));
            }
            if let Some(d) = inner
                .databases
                .iter()
                .find(|d| p.starts_with(&format!("{d}.")) || d.starts_with(&format!("{p}.")))
            {
                return Err(StoreError::new(
                    status::DATABASE_ALREADY_EXISTS,
                    format!("{p} overlaps the existing database {d}"),
                ));
            }
            Ok(())
        }
        Event::Schema(SchemaOp::DeleteDatabase(p)) => {
            if !inner.databases.contains(p) {
                return Err(StoreError::new(
                    status::DATABASE_NOT_EXIST,
                    format!("database {p} does not exist"),
                ));
            }
            Ok(())
        }
        Event::Schema(SchemaOp::CreateTimeseries { path, aligned, .. }) => {
            check_series_path(path)?;
            if inner.series.contains_key(path) {
                return Err(StoreError::new(
                    status::TIMESERIES_ALREADY_EXIST,
                    format!("timeseries {path} already exists"),
                ));
            }
            let last = split(path).last().map_or(0, |n| n.len());
            let device = &path[..path.len() - last - 1];
            if let Some((_, s)) =
                inner
                    .series
                    .range(format!("{device}.")..)
                    .next()
                    .filter(|(p, _)| {
                        p.starts_with(&format!("{device}.")) && !p[device.len() + 1..].contains('.')
                    })
            {
                if s.info.aligned != *aligned {
                    return Err(StoreError::new(
                        status::METADATA_ERROR,
                        format!(
                            "device {device} already has {}aligned series",
                            if s.info.aligned { "" } else { "non-" }
                        ),
                    ));
                }
            }
            if db_of(inner, path).is_none() && auto_database(config, path).is_none() {
                return Err(StoreError::new(
                    status::DATABASE_NOT_EXIST,
                    format!("no database for {path}"),
                ));
            }
            Ok(())
        }
    }
}

fn ensure_database(inner: &mut Inner, config: &StoreConfig, path: &str) {
    if db_of(inner, path).is_none() {
        if let Some(db) = auto_database(config, path) {
            inner.databases.insert(db);
        }
    }
}

/// Applies a validated tablet to the memtables, creating its new series.
/// `slots`: per column, the slot of its series as validation found it
/// (still valid: no series removed since), or none (looked up by path).
pub(super) fn apply_tablet<T: TabletData>(
    inner: &mut Inner,
    config: &StoreConfig,
    t: &T,
    slots: &[Option<Slot>],
    buf: &mut String,
) {
    for ci in 0..t.width() {
        let slot = slots.get(ci).copied().flatten();
        let s = match slot.and_then(|i| inner.series.at_mut(i)) {
            Some(s) => s,
            None => {
                let path = series_path(buf, t.device(), t.measurement(ci));
                // One lookup for a known series.
                match inner.series.get_mut(path) {
                    Some(s) => s,
                    None => new_series(inner, config, t.aligned(), t.data_type(ci), path),
                }
            }
        };
        let before = s.mem.times.len();
        let last = s.mem.times.last().copied();
        let added = t.append_column(ci, &mut s.mem.times, &mut s.mem.values);
        let new = &s.mem.times[before..];
        let in_order = new.windows(2).all(|w| w[0] < w[1])
            && match (last, new.first()) {
                (Some(l), Some(&f)) => l < f,
                _ => true,
            };
        if !in_order {
            s.mem.sorted = false;
        }
        inner.mem_points += added;
    }
}

/// Creates the series `path` a tablet writes first (and its database).
fn new_series<'i>(
    inner: &'i mut Inner,
    config: &StoreConfig,
    aligned: bool,
    data_type: DataType,
    path: &str,
) -> &'i mut Series {
    ensure_database(inner, config, path);
    let info = SeriesInfo {
        data_type,
        encoding: encoding_name(data_type.default_encoding()).to_string(),
        compressor: "LZ4".into(),
        aligned,
    };
    inner.series.get_or_insert(
        path,
        Series {
            mem: Mem::new(info.data_type),
            info,
            frozen: None,
            chunks: Vec::new(),
        },
    )
}

/// Applies an event to the in-memory state.
pub(super) fn apply(
    inner: &mut Inner,
    config: &StoreConfig,
    ev: &Event,
    check: bool,
) -> SResult<()> {
    match ev {
        Event::Tablet(t) => {
            if check {
                validate(inner, config, ev)?;
            }
            apply_tablet(inner, config, t, &[], &mut String::new());
            Ok(())
        }
        Event::Delete { patterns, min, max } => {
            let pats: Vec<Path> = patterns
                .iter()
                .filter_map(|p| crate::sql::parse_path(p).ok())
                .collect();
            let upto = inner.next_seq.saturating_sub(1);
            let mut tombs = Vec::new();
            for (path, s) in inner.series.iter_mut() {
                if !pats.iter().any(|p| p.matches(&split(path))) {
                    continue;
                }
                let keep: Vec<usize> = (0..s.mem.times.len())
                    .filter(|&i| s.mem.times[i] < *min || s.mem.times[i] > *max)
                    .collect();
                if keep.len() != s.mem.times.len() {
                    inner.mem_points -= s.mem.times.len() - keep.len();
                    s.mem.times = keep.iter().map(|&i| s.mem.times[i]).collect();
                    s.mem.values = s.mem.values.gather(&keep);
                }
                if !s.chunks.is_empty() || s.frozen.is_some() {
                    tombs.push(Tombstone {
                        path: path.clone(),
                        min: *min,
                        max: *max,
                        upto_seq: upto,
                    });
                }
            }
            inner.tombstones.extend(tombs);
            Ok(())
        }
        Event::Schema(op) => {
            if check {
                validate(inner, config, ev)?;
            }
            match op {
                SchemaOp::CreateDatabase(p) => {
                    inner.databases.insert(p.clone());
                }
                SchemaOp::DeleteDatabase(p) => {
                    inner.databases.remove(p);
                    let prefix = format!("{p}.");
                    let gone: Vec<String> = inner
                        .series
                        .keys()
                        .filter(|k| k.starts_with(&prefix))
                        .cloned()
                        .collect();
                    let upto = inner.next_seq.saturating_sub(1);
                    for k in gone {
                        if let Some(s) = inner.series.remove(&k) {
                            inner.mem_points -= s.mem.times.len();
                            if !s.chunks.is_empty() || s.frozen.is_some() {
                                inner.tombstones.push(Tombstone {
                                    path: k,
                                    min: i64::MIN,
                                    max: i64::MAX,
                                    upto_seq: upto,
                                });
                            }
                        }
                    }
                }
                SchemaOp::CreateTimeseries {
                    path,
                    data_type,
                    encoding,
                    compressor,
                    aligned,
                } => {
                    ensure_database(inner, config, path);
                    let info = SeriesInfo {
                        data_type: *data_type,
                        encoding: encoding.clone(),
                        compressor: compressor.clone(),
                        aligned: *aligned,
                    };
                    inner.series.insert(
                        path.clone(),
                        Series {
                            mem: Mem::new(*data_type),
                            info,
                            frozen: None,
                            chunks: Vec::new(),
                        },
                    );
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_series_path;

    #[test]
    fn series_paths_need_root_a_database_and_a_measurement() {
        // The one-pass check against the plain definition: first node
        // root, every node non-empty, at least three nodes.
        let plain = |p: &str| {
            let nodes: Vec<&str> = p.split('.').collect();
            nodes[0] == "root" && nodes.len() >= 3 && nodes.iter().all(|n| !n.is_empty())
        };
        for p in [
            "root.sg.d.s",
            "root.sg.s",
            "root.sg",
            "root",
            "root.",
            "root..s",
            "root.sg.",
            "root.sg..s",
            ".root.sg.s",
            "rooty.sg.s",
            "ROOT.sg.s",
            "",
            ".",
            "root.a.b.c.d",
            "x.root.sg.s",
            "root.sg.d.s.",
        ] {
            assert_eq!(check_series_path(p).is_ok(), plain(p), "{p}");
        }
        let e = check_series_path("root.sg").unwrap_err();
        assert!(
            e.message.contains("root.sg is not a valid series path"),
            "{}",
            e.message
        );
    }
}
