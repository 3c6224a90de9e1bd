//! Loading a received TsFile into the store: checked whole first, then
//! streamed batch by batch.
//!
//! 1. [`TsFile::validate`] reads the whole file: every page decoded and
//!    checked against its statistics, the index matched against the data
//!    section. A damaged, truncated or unsupported file (an encoding or
//!    codec the reader does not know, an encrypted or table-model file) is
//!    refused with 1100 LOAD_FILE_ERROR naming the file, the byte and the
//!    reason; nothing of it is applied.
//! 2. Its series, from the index, are checked against the schema without
//!    writing ([`Apply::check_series`]): names legal, types and alignment
//!    as the store has them, new series allowed (`enable_auto_create_schema`).
//!    A mismatch is 1109 VERIFY_METADATA_ERROR, nothing applied.
//! 3. [`TsFile::batches`] streams it: one page per column in memory at a
//!    time, each batch a tablet written through the change log. Memory is
//!    bounded by a page per column, never by the file (a 1 GiB file loads
//!    in a few MiB).
//!
//! What step 1 and 2 cannot foresee (the disk filling during step 3) stops
//! the load with the points before it applied and a status saying so; the
//! sender sends the file again, and applying it again changes nothing
//! already applied (a later write of a series and time replaces the
//! earlier one).
//!
//! Differences from IoTDB 1.2's `LOAD TSFILE`: databases are made as the
//! node's schema rules say (`default_storage_group_level`), where a 1.2
//! receiver loads with `autoCreateDatabase=false`; TsFile v4 files (Apache
//! TsFile 2.x, tree model) load too; `.resource` files are not needed.

use std::collections::HashMap;
use std::path::Path;

use protocol::names;
use protocol::tsfile::{TsFile, TsType};
use protocol::types::status;

use crate::{Apply, SeriesCheck};

/// What a load applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Devices in the file.
    pub devices: usize,
    /// Non-null values written.
    pub points: u64,
    /// The log offset to wait on before acknowledging (none when the file
    /// held no points).
    pub offset: Option<u64>,
}

/// A time range of series to leave out of a load: the deletions a sender
/// recorded for the file (`.mods`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// Series path pattern (`*` one node, `**` one or more).
    pub pattern: String,
    /// Chunks whose header starts before this file offset are affected.
    pub file_offset: u64,
    /// Smallest time deleted.
    pub start: i64,
    /// Largest time deleted.
    pub end: i64,
}

fn load_error(name: &str, e: impl std::fmt::Display) -> (i32, String) {
    (
        status::LOAD_FILE_ERROR,
        format!("{name}: {e}; nothing of it was applied"),
    )
}

/// The stored form of a device path from a file.
fn device_name(path: &str) -> Result<String, names::NameError> {
    Ok(names::canonical_device(path)?.into_owned())
}

/// The stored form of a measurement from a file (kept in backquotes, or
/// raw: both are read).
fn measurement_name(m: &str) -> Result<String, names::NameError> {
    match names::canonical_measurement(m) {
        Ok(c) => Ok(c.into_owned()),
        Err(e) => match names::name_to_node(m) {
            Ok(c) => Ok(c.into_owned()),
            Err(_) => Err(e),
        },
    }
}

/// Loads the TsFile at `path` (received as `name`) through `apply`.
///
/// # Errors
/// `(status, message)`: 1100 for a file that cannot be read (nothing
/// applied), 1109 for series the schema refuses (nothing applied), the
/// store's status for a write that failed part-way (the message says how
/// many points were applied).
pub fn load(path: &Path, name: &str, apply: &dyn Apply) -> Result<Loaded, (i32, String)> {
    load_without(path, name, apply, &[])
}

/// [`load`], leaving out the points `deletions` cover.
///
/// # Errors
/// As [`load`].
pub fn load_without(
    path: &Path,
    name: &str,
    apply: &dyn Apply,
    deletions: &[Deletion],
) -> Result<Loaded, (i32, String)> {
    let file = TsFile::open(path).map_err(|e| load_error(name, e))?;
    file.validate().map_err(|e| load_error(name, e))?;
    if let Some((table, _)) = file.tables().first() {
        return Err(load_error(
            name,
            format!("a table-model TsFile (table {table}): edgepipe stores the tree model (root.…) only"),
        ));
    }
    // The series, checked against the schema before anything is written.
    let mut devices: HashMap<String, String> = HashMap::new();
    let mut checks = Vec::new();
    let index = file.devices().map_err(|e| load_error(name, e))?;
    for d in &index {
        let raw = d.id.path();
        let dev = device_name(&raw).map_err(|e| {
            (
                status::VERIFY_METADATA_ERROR,
                format!("{name}: device {raw}: {e}; nothing of it was applied"),
            )
        })?;
        let series = file.series(d).map_err(|e| load_error(name, e))?;
        // An aligned device's time column: type VECTOR, or (TsFile 2.x's
        // writer) an empty measurement name.
        let time_column = |s: &protocol::tsfile::SeriesMeta| {
            s.data_type == TsType::Vector || s.measurement.is_empty()
        };
        let aligned = series.iter().any(time_column);
        for s in series.iter().filter(|s| !time_column(s)) {
            let m = measurement_name(&s.measurement).map_err(|e| {
                (
                    status::VERIFY_METADATA_ERROR,
                    format!(
                        "{name}: series {raw}.{}: {e}; nothing of it was applied",
                        s.measurement
                    ),
                )
            })?;
            let data_type = s.data_type.column_type().ok_or_else(|| {
                load_error(
                    name,
                    format!(
                        "series {raw}.{} has type {}, which edgepipe cannot store",
                        s.measurement, s.data_type
                    ),
                )
            })?;
            checks.push(SeriesCheck {
                path: format!("{dev}.{m}"),
                data_type,
                aligned,
            });
        }
        devices.insert(raw, dev);
    }
    apply.check_series(&checks).map_err(|(code, m)| {
        (
            status::VERIFY_METADATA_ERROR,
            format!("{name}: {code}: {m}; nothing of it was applied"),
        )
    })?;
    let mut loaded = Loaded {
        devices: index.len(),
        ..Loaded::default()
    };
    let mut measurements: HashMap<String, String> = HashMap::new();
    for b in file.batches() {
        let b = b.map_err(|e| {
            (
                status::LOAD_FILE_ERROR,
                format!(
                    "{name}: {e}, after {} points were applied: send the file again",
                    loaded.points
                ),
            )
        })?;
        let raw = b.device.path();
        let chunk = b.chunk_offset;
        let mut t = b.into_tablet();
        t.device = match devices.get(&raw) {
            Some(d) => d.clone(),
            None => device_name(&raw).map_err(|e| {
                (
                    status::VERIFY_METADATA_ERROR,
                    format!("{name}: device {raw}: {e}"),
                )
            })?,
        };
        for m in t.measurements.iter_mut() {
            if let Some(c) = measurements.get(m.as_str()) {
                *m = c.clone();
                continue;
            }
            let c = measurement_name(m)
                .map_err(|e| (status::VERIFY_METADATA_ERROR, format!("{name}: {e}")))?;
            measurements.insert(m.clone(), c.clone());
            *m = c;
        }
        if !deletions.is_empty() {
            drop_deleted(&mut t, chunk, deletions);
        }
        let points = t.points() as u64;
        if points == 0 {
            continue;
        }
        let bytes = t.serialize_v12();
        match apply.apply(vec![(t, &bytes)]) {
            Ok(o) => {
                if o.is_some() {
                    loaded.offset = o;
                }
                loaded.points += points;
            }
            Err((code, m)) => {
                return Err((
                    code,
                    format!(
                    "{name}: {m}, after {} points of the file were applied: send the file again",
                    loaded.points
                ),
                ))
            }
        }
    }
    Ok(loaded)
}

/// Marks null the cells `deletions` cover (a chunk before a deletion's
/// file offset, a matching series, a time in its range).
fn drop_deleted(t: &mut protocol::tablet::Tablet, chunk: u64, deletions: &[Deletion]) {
    for (c, m) in t.measurements.iter().enumerate() {
        let path = format!("{}.{m}", t.device);
        for d in deletions
            .iter()
            .filter(|d| chunk < d.file_offset && pattern_matches(&d.pattern, &path))
        {
            let rows = t.times.len();
            let nulls = t.nulls[c].get_or_insert_with(|| vec![false; rows]);
            for (r, &time) in t.times.iter().enumerate() {
                if time >= d.start && time <= d.end {
                    nulls[r] = true;
                }
            }
        }
    }
}

/// Whether series `path` matches `pattern` (`*` is one node, `**` one or
/// more), node by node; nodes in backquotes may hold dots.
pub fn pattern_matches(pattern: &str, path: &str) -> bool {
    let (Ok(p), Ok(s)) = (names::split_nodes(pattern), names::split_nodes(path)) else {
        return false;
    };
    fn go(p: &[&str], s: &[&str]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((&"**", rest)) => (1..=s.len()).any(|k| go(rest, &s[k..])),
            Some((&"*", rest)) => !s.is_empty() && go(rest, &s[1..]),
            Some((n, rest)) => {
                s.first()
                    .is_some_and(|x| names::unquote(x) == names::unquote(n))
                    && go(rest, &s[1..])
            }
        }
    }
    // `**` is bounded by the path's length: at most nodes² steps.
    p.len() <= 64 && go(&p, &s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::Sink;
    use protocol::types::{DataType, Value};

    fn sample(name: &str) -> std::path::PathBuf {
        format!(
            "{}/../protocol/tests/data/{name}",
            env!("CARGO_MANIFEST_DIR")
        )
        .into()
    }

    fn values(sink: &Sink, series: &str) -> Vec<(i64, Value)> {
        let mut out = Vec::new();
        for t in sink.tablets() {
            for (c, m) in t.measurements.iter().enumerate() {
                if format!("{}.{m}", t.device) == series {
                    for r in 0..t.rows() {
                        if !t.is_null(c, r) {
                            out.push((t.times[r], t.columns[c].get(r)));
                        }
                    }
                }
            }
        }
        out.sort_by_key(|x| x.0);
        out
    }

    #[test]
    fn the_reference_samples_load_with_their_values() {
        let sink = Sink::default();
        let l = load(&sample("v3_aligned_snappy.tsfile"), "a", &sink).unwrap();
        assert_eq!(l.devices, 1);
        let t0 = 1_700_000_000_000i64;
        // s2 DOUBLE = 1.5r, null at r = 4 and 9.
        let want: Vec<_> = (0..10)
            .filter(|r| ![4, 9].contains(r))
            .map(|r| (t0 + r * 1000, Value::Double(1.5 * r as f64)))
            .collect();
        assert_eq!(values(&sink, "root.sg.d2.s2"), want);
        assert!(sink.tablets().iter().all(|t| t.aligned));
        let sink = Sink::default();
        load(&sample("v4_tree_pypi_tsfile_2.5.0.tsfile"), "b", &sink).unwrap();
        assert_eq!(
            values(&sink, "root.sg.d1.s1"),
            vec![
                (1, Value::Int64(10)),
                (2, Value::Int64(20)),
                (3, Value::Int64(30))
            ]
        );
        // The table model is refused by name.
        let sink = Sink::default();
        let (code, m) = load(&sample("v4_table_pypi_tsfile_2.5.0.tsfile"), "c", &sink).unwrap_err();
        assert_eq!(code, 1100);
        assert!(m.contains("table-model TsFile (table t1)"), "{m}");
        assert!(sink.tablets().is_empty());
    }

    #[test]
    fn a_schema_conflict_refuses_the_whole_file() {
        let sink = Sink::default();
        sink.schema
            .lock()
            .unwrap()
            .push(("root.sg.e6.x".into(), DataType::Text));
        let (code, m) =
            load(&sample("v3_multipage_deg3_uncompressed.tsfile"), "m", &sink).unwrap_err();
        assert_eq!(code, 1109);
        assert!(m.contains("data type of root.sg.e6.x is TEXT"), "{m}");
        assert!(sink.tablets().is_empty());
    }

    #[test]
    fn deletions_leave_out_what_they_cover() {
        let sink = Sink::default();
        let dels = [Deletion {
            pattern: "root.sg.*.s1".into(),
            file_offset: u64::MAX,
            start: 1_700_000_001_000,
            end: 1_700_000_002_000,
        }];
        load_without(&sample("v3_nonaligned_lz4.tsfile"), "n", &sink, &dels).unwrap();
        let got: Vec<i64> = values(&sink, "root.sg.d1.s1").iter().map(|x| x.0).collect();
        let t0 = 1_700_000_000_000i64;
        // s1 is null at r = 3; r = 1 and 2 deleted.
        assert_eq!(got, [0, 4, 5, 6, 7, 8, 9].map(|r| t0 + r * 1000));
        assert_eq!(values(&sink, "root.sg.d1.s5").len(), 10);
        // A deletion recorded before the chunk was written leaves it.
        let sink = Sink::default();
        let early = [Deletion {
            file_offset: 7,
            ..dels[0].clone()
        }];
        load_without(&sample("v3_nonaligned_lz4.tsfile"), "n", &sink, &early).unwrap();
        assert_eq!(values(&sink, "root.sg.d1.s1").len(), 9);
    }

    #[test]
    fn patterns_match_node_by_node() {
        for (p, s, want) in [
            ("root.sg.**", "root.sg.d.s", true),
            ("root.sg.**", "root.sg", false),
            ("root.*.d.s", "root.sg.d.s", true),
            ("root.*.s", "root.sg.d.s", false),
            ("root.**.s", "root.a.b.c.s", true),
            ("root.sg.d.s", "root.sg.d.s", true),
            ("root.sg.`d`.s", "root.sg.d.s", true),
            ("root.sg.d", "root.sg.d.s", false),
            ("root.sg.`a.b`", "root.sg.`a.b`", true),
        ] {
            assert_eq!(pattern_matches(p, s), want, "{p} vs {s}");
        }
    }
}
