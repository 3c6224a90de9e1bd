//! The reader on the reference samples (`shared/reference/tsfile-samples`,
//! copied to `protocol/tests/data`): the documented values, nulls included.

use std::collections::BTreeMap;

use super::*;
use crate::types::Value;

pub(crate) fn sample(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// (device, measurement) → rows of (time, value or null), in file order.
pub(crate) type Rows = BTreeMap<(String, String), Vec<(i64, Option<Value>)>>;

pub(crate) fn collect<S: Source>(f: &TsFile<S>) -> Rows {
    let mut out = Rows::new();
    for b in f.batches() {
        let b = b.unwrap_or_else(|e| panic!("{e}"));
        for c in &b.columns {
            let rows = out
                .entry((b.device.path(), c.measurement.clone()))
                .or_default();
            for (r, &t) in b.times.iter().enumerate() {
                let null = c.nulls.as_ref().is_some_and(|n| n[r]);
                rows.push((t, (!null).then(|| c.values.get(r))));
            }
        }
    }
    out
}

/// The 10-row tablet of §6: row r at t0 + 1000r.
fn documented(series: &str, r: i64) -> Option<Value> {
    match series {
        "s1" => (r != 3).then(|| Value::Int64(100 + 7 * r)),
        "s2" => (r != 4 && r != 9).then_some(Value::Double(1.5 * r as f64)),
        "s3" => (r != 2).then(|| Value::Text(format!("v{r}").into_bytes())),
        "s4" => (r != 6).then_some(Value::Boolean(r % 3 == 0)),
        "s5" => Some(Value::Int32((r * r - 10) as i32)),
        "s6" => (r != 0).then_some(Value::Float(0.25 * r as f32)),
        _ => unreachable!(),
    }
}

fn check_tablet(rows: &Rows, device: &str, t0: i64, aligned: bool) {
    for s in ["s1", "s2", "s3", "s4", "s5", "s6"] {
        let got = &rows[&(device.to_string(), s.to_string())];
        let want: Vec<(i64, Option<Value>)> = (0..10)
            .map(|r| (t0 + 1000 * r, documented(s, r)))
            .filter(|(_, v)| aligned || v.is_some())
            .collect();
        assert_eq!(got, &want, "{device}.{s}");
    }
}

#[test]
fn v3_nonaligned_lz4_holds_the_documented_values() {
    let f = TsFile::new(sample("v3_nonaligned_lz4.tsfile")).unwrap();
    assert_eq!(f.version(), Version::V3);
    let rows = collect(&f);
    assert_eq!(rows.len(), 6);
    check_tablet(&rows, "root.sg.d1", 1_700_000_000_000, false);
    let s = f.validate().unwrap();
    assert_eq!((s.devices, s.series, s.chunks, s.pages), (1, 6, 6, 6));
    assert_eq!(s.points, 9 + 8 + 9 + 9 + 10 + 9);
    // The index: s1 INT64 with 9 points, one chunk at byte 19.
    let d = f.devices().unwrap();
    assert_eq!(d[0].id.path(), "root.sg.d1");
    let series = f.series(&d[0]).unwrap();
    assert_eq!(series[0].measurement, "s1");
    assert_eq!(series[0].statistics.count, 9);
    assert_eq!(series[0].chunks[0].offset, 19);
}

#[test]
fn v3_aligned_snappy_holds_the_documented_values_and_nulls() {
    let f = TsFile::new(sample("v3_aligned_snappy.tsfile")).unwrap();
    let rows = collect(&f);
    assert_eq!(rows.len(), 6);
    let t0 = rows[&("root.sg.d2".into(), "s1".into())][0].0;
    check_tablet(&rows, "root.sg.d2", t0, true);
    let b: Vec<Batch> = f.batches().map(Result::unwrap).collect();
    assert!(b.iter().all(|b| b.aligned));
    let s = f.validate().unwrap();
    assert_eq!((s.devices, s.series, s.chunks), (1, 6, 7));
    assert_eq!(s.rows, 10);
}

#[test]
fn v3_multipage_holds_every_device_and_page() {
    let f = TsFile::new(sample("v3_multipage_deg3_uncompressed.tsfile")).unwrap();
    let rows = collect(&f);
    check_tablet(&rows, "root.sg.d1", 1000, false);
    check_tablet(&rows, "root.sg.d2", 1000, true);
    for i in 3..=6 {
        let got = &rows[&(format!("root.sg.e{i}"), "x".to_string())];
        assert_eq!(
            got,
            &vec![
                (5, Some(Value::Int64(10 * i))),
                (6, Some(Value::Int64(10 * i + 1)))
            ],
            "e{i}"
        );
    }
    let s = f.validate().unwrap();
    assert_eq!(s.devices, 6);
    assert!(s.pages > s.chunks, "{s:?}");
    let names: Vec<String> = f.devices().unwrap().iter().map(|d| d.id.path()).collect();
    assert_eq!(
        names,
        [
            "root.sg.d1",
            "root.sg.d2",
            "root.sg.e3",
            "root.sg.e4",
            "root.sg.e5",
            "root.sg.e6"
        ]
    );
}

#[test]
fn v4_tree_and_table_samples() {
    let f = TsFile::new(sample("v4_tree_pypi_tsfile_2.5.0.tsfile")).unwrap();
    assert_eq!(f.version(), Version::V4);
    let rows = collect(&f);
    assert_eq!(
        rows[&("root.sg.d1".into(), "s1".into())],
        vec![
            (1, Some(Value::Int64(10))),
            (2, Some(Value::Int64(20))),
            (3, Some(Value::Int64(30)))
        ]
    );
    let d = f.devices().unwrap();
    assert_eq!(
        d[0].id.segments,
        vec![Some("root.sg".to_string()), Some("d1".to_string())]
    );
    f.validate().unwrap();

    let f = TsFile::new(sample("v4_table_pypi_tsfile_2.5.0.tsfile")).unwrap();
    let rows = collect(&f);
    assert_eq!(
        rows[&("t1.r1".into(), "temp".into())],
        vec![
            (100, Some(Value::Double(20.5))),
            (101, Some(Value::Double(21.5))),
            (102, Some(Value::Double(22.5)))
        ]
    );
    assert_eq!(f.tables()[0].0, "t1");
    assert_eq!(f.tables()[0].1[0].name, "region");
    assert_eq!(f.tables()[0].1[0].category, 0);
    let b = f.batches().next().unwrap().unwrap();
    assert!(b.aligned);
    assert_eq!(
        b.device.segments,
        vec![Some("t1".to_string()), Some("r1".to_string())]
    );
    f.validate().unwrap();
}

#[test]
fn every_truncation_of_every_sample_is_an_error() {
    for name in [
        "v3_nonaligned_lz4.tsfile",
        "v3_aligned_snappy.tsfile",
        "v3_multipage_deg3_uncompressed.tsfile",
        "v4_tree_pypi_tsfile_2.5.0.tsfile",
        "v4_table_pypi_tsfile_2.5.0.tsfile",
    ] {
        let b = sample(name);
        for cut in 0..b.len() {
            let e = TsFile::new(b[..cut].to_vec()).unwrap_err();
            assert!(e.is_corruption(), "{name} cut {cut}: {e}");
        }
    }
}

#[test]
fn flipped_bytes_are_found_or_only_touch_values() {
    // Every single-byte change of the uncompressed multi-page sample is
    // reported by validate(), or leaves every device, series and time as
    // it was: the format has no checksum over values, so a changed byte
    // inside a value of an uncompressed page (not its first or last, which
    // the statistics hold) cannot be seen by any reader.
    let b = sample("v3_multipage_deg3_uncompressed.tsfile");
    let want = collect(&TsFile::new(b.clone()).unwrap());
    let mut found = 0;
    let mut unseen = 0;
    for at in 0..b.len() {
        let mut m = b.clone();
        m[at] ^= 0x10;
        let Ok(f) = TsFile::new(m) else {
            found += 1;
            continue;
        };
        if f.validate().is_err() {
            found += 1;
            continue;
        }
        let mut got = Rows::new();
        let mut ok = true;
        for batch in f.batches() {
            let Ok(batch) = batch else {
                ok = false;
                break;
            };
            for c in &batch.columns {
                let rows = got
                    .entry((batch.device.path(), c.measurement.clone()))
                    .or_default();
                for (r, &t) in batch.times.iter().enumerate() {
                    let null = c.nulls.as_ref().is_some_and(|n| n[r]);
                    rows.push((t, (!null).then(|| c.values.get(r))));
                }
            }
        }
        assert!(ok, "validate passed but the load failed at byte {at}");
        let shape = |r: &Rows| -> Vec<_> {
            r.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.iter().map(|(t, x)| (*t, x.is_some())).collect::<Vec<_>>(),
                    )
                })
                .collect()
        };
        assert_eq!(
            shape(&got),
            shape(&want),
            "byte {at}: validate passed, rows changed"
        );
        if got != want {
            unseen += 1;
        }
    }
    assert!(found > b.len() / 2, "{found} of {}", b.len());
    // Only bytes inside values go unseen: few of them.
    assert!(unseen < b.len() / 10, "{unseen} of {}", b.len());
}

/// A test-only TsFile v3 writer, from the layout in the module doc, for
/// the codec and encoding combinations no sample holds.
mod writer {
    use crate::tablet::Column;
    use crate::tsfile::compress::tests::compress;
    use crate::tsfile::encoding::tests::{enc_ts2diff, encode, put_varint};
    use crate::tsfile::{Compression, Encoding, TsType};
    use crate::types::Value;

    fn uvarint(out: &mut Vec<u8>, mut v: u32) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn varstr(out: &mut Vec<u8>, s: &str) {
        put_varint(out, s.len() as i32);
        out.extend_from_slice(s.as_bytes());
    }

    fn ts_type(c: &Column) -> TsType {
        match c {
            Column::Boolean(_) => TsType::Boolean,
            Column::Int32(_) => TsType::Int32,
            Column::Int64(_) => TsType::Int64,
            Column::Float(_) => TsType::Float,
            Column::Double(_) => TsType::Double,
            Column::Text(_) => TsType::Text,
        }
    }

    /// Statistics of the non-null rows.
    #[derive(Clone)]
    struct St {
        count: u32,
        start: i64,
        end: i64,
        first: Option<Value>,
        last: Option<Value>,
    }

    impl St {
        fn of(times: &[i64], col: Option<&Column>, nulls: &[bool]) -> St {
            let rows: Vec<usize> = (0..times.len())
                .filter(|&r| !nulls.get(r).copied().unwrap_or(false))
                .collect();
            St {
                count: rows.len() as u32,
                start: rows.first().map_or(0, |&r| times[r]),
                end: rows.last().map_or(0, |&r| times[r]),
                first: col.and_then(|c| rows.first().map(|&r| c.get(r))),
                last: col.and_then(|c| rows.last().map(|&r| c.get(r))),
            }
        }
        fn merge(&mut self, o: &St) {
            if o.count == 0 {
                return;
            }
            if self.count == 0 {
                *self = o.clone();
                return;
            }
            self.count += o.count;
            self.end = o.end;
            self.last = o.last.clone();
        }
        fn put(&self, out: &mut Vec<u8>, t: TsType) {
            uvarint(out, self.count);
            out.extend_from_slice(&self.start.to_be_bytes());
            out.extend_from_slice(&self.end.to_be_bytes());
            let v = |x: &Option<Value>, out: &mut Vec<u8>| match x
                .clone()
                .unwrap_or(Value::placeholder(t.column_type().unwrap()))
            {
                Value::Boolean(b) => out.push(u8::from(b)),
                Value::Int32(i) => out.extend_from_slice(&i.to_be_bytes()),
                Value::Int64(i) => out.extend_from_slice(&i.to_be_bytes()),
                Value::Float(f) => out.extend_from_slice(&f.to_be_bytes()),
                Value::Double(f) => out.extend_from_slice(&f.to_be_bytes()),
                Value::Text(b) => {
                    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    out.extend_from_slice(&b);
                }
            };
            match t {
                TsType::Vector => {}
                TsType::Boolean => {
                    v(&self.first, out);
                    v(&self.last, out);
                    out.extend_from_slice(&0i64.to_be_bytes());
                }
                TsType::Text => {
                    v(&self.first, out);
                    v(&self.last, out);
                }
                _ => {
                    // min, max (not checked by the reader), first, last, sum.
                    v(&self.first, out);
                    v(&self.last, out);
                    v(&self.first, out);
                    v(&self.last, out);
                    if t == TsType::Int32 {
                        out.extend_from_slice(&0i64.to_be_bytes());
                    } else {
                        out.extend_from_slice(&0f64.to_be_bytes());
                    }
                }
            }
        }
    }

    struct Series {
        name: String,
        t: TsType,
        kind: u8,
        chunks: Vec<(u64, St)>,
    }

    /// Writes devices and chunks in order; `finish` writes the index.
    pub(crate) struct Writer {
        out: Vec<u8>,
        devices: Vec<(String, Vec<Series>)>,
    }

    impl Writer {
        pub(crate) fn new() -> Writer {
            let mut out = b"TsFile".to_vec();
            out.push(3);
            Writer {
                out,
                devices: Vec::new(),
            }
        }

        fn series(&mut self, name: &str, t: TsType, kind: u8) -> &mut Series {
            let d = &mut self.devices.last_mut().unwrap().1;
            if let Some(i) = d.iter().position(|s| s.name == name) {
                return &mut d[i];
            }
            d.push(Series {
                name: name.into(),
                t,
                kind,
                chunks: Vec::new(),
            });
            d.last_mut().unwrap()
        }

        pub(crate) fn device(&mut self, path: &str) {
            self.out.push(0);
            varstr(&mut self.out, path);
            if self.devices.last().is_none_or(|d| d.0 != path) {
                self.devices.push((path.into(), Vec::new()));
            }
        }

        /// Pages: (header statistics, uncompressed body); empty bodies are
        /// empty pages.
        fn chunk(
            &mut self,
            marker: u8,
            name: &str,
            t: TsType,
            c: Compression,
            e: Encoding,
            pages: Vec<(St, Vec<u8>)>,
        ) -> u64 {
            let single = pages.len() == 1;
            let mut data = Vec::new();
            for (st, body) in &pages {
                if body.is_empty() {
                    data.push(0);
                    continue;
                }
                let z = compress(c, body);
                uvarint(&mut data, body.len() as u32);
                uvarint(&mut data, z.len() as u32);
                if !single {
                    st.put(&mut data, t);
                }
                data.extend_from_slice(&z);
            }
            let at = self.out.len() as u64;
            self.out.push(if single || pages.is_empty() {
                marker | 0x05
            } else {
                marker | 0x01
            });
            varstr(&mut self.out, name);
            uvarint(&mut self.out, data.len() as u32);
            self.out.extend_from_slice(&[t.id(), c.id(), e.id()]);
            self.out.extend_from_slice(&data);
            at
        }

        /// A non-aligned chunk of `col` at `times`, `per_page` rows a page.
        pub(crate) fn plain(
            &mut self,
            name: &str,
            times: &[i64],
            col: &Column,
            e: Encoding,
            c: Compression,
            per_page: usize,
        ) {
            let t = ts_type(col);
            let mut pages = Vec::new();
            let mut total = St::of(&[], None, &[]);
            for start in (0..times.len()).step_by(per_page) {
                let rows: Vec<usize> = (start..(start + per_page).min(times.len())).collect();
                let pt = &times[rows[0]..=rows[rows.len() - 1]];
                let pc = col.gather(&rows);
                let tb = enc_ts2diff(pt, false);
                let mut body = Vec::new();
                uvarint(&mut body, tb.len() as u32);
                body.extend_from_slice(&tb);
                body.extend(encode(&pc, e).expect("encoding applies"));
                let st = St::of(pt, Some(&pc), &[]);
                total.merge(&st);
                pages.push((st, body));
            }
            let at = self.chunk(0, name, t, c, e, pages);
            self.series(name, t, 0).chunks.push((at, total));
        }

        /// An aligned chunk group: a time chunk and one value chunk per
        /// column (`nulls[r]` = row r is null; a column null everywhere
        /// gets an empty chunk, a page null everywhere an empty page).
        pub(crate) fn aligned(
            &mut self,
            times: &[i64],
            cols: &[(&str, Column, Vec<bool>, Encoding)],
            c: Compression,
            per_page: usize,
        ) {
            let ranges: Vec<Vec<usize>> = (0..times.len())
                .step_by(per_page)
                .map(|s| (s..(s + per_page).min(times.len())).collect())
                .collect();
            let mut pages = Vec::new();
            let mut total = St::of(&[], None, &[]);
            for rows in &ranges {
                let pt = &times[rows[0]..=rows[rows.len() - 1]];
                let st = St::of(pt, None, &[]);
                total.merge(&st);
                pages.push((st, enc_ts2diff(pt, false)));
            }
            let at = self.chunk(0x80, "", TsType::Vector, c, Encoding::Ts2Diff, pages);
            self.series("", TsType::Vector, 0x80)
                .chunks
                .push((at, total));
            for (name, col, nulls, e) in cols {
                let t = ts_type(col);
                let mut pages = Vec::new();
                let mut total = St::of(&[], None, &[]);
                if nulls.iter().any(|&n| !n) {
                    for rows in &ranges {
                        let pt = &times[rows[0]..=rows[rows.len() - 1]];
                        let pn: Vec<bool> = rows.iter().map(|&r| nulls[r]).collect();
                        let st = St::of(pt, Some(&col.gather(rows)), &pn);
                        if st.count == 0 {
                            pages.push((st, Vec::new()));
                            continue;
                        }
                        let present: Vec<usize> =
                            rows.iter().copied().filter(|&r| !nulls[r]).collect();
                        let mut body = (rows.len() as i32).to_be_bytes().to_vec();
                        let mut bitmap = vec![0u8; rows.len().div_ceil(8)];
                        for (i, &n) in pn.iter().enumerate() {
                            if !n {
                                bitmap[i / 8] |= 0x80 >> (i % 8);
                            }
                        }
                        body.extend_from_slice(&bitmap);
                        body.extend(encode(&col.gather(&present), *e).expect("encoding applies"));
                        total.merge(&st);
                        pages.push((st, body));
                    }
                }
                let at = self.chunk(0x40, name, t, c, *e, pages);
                self.series(name, t, 0x40).chunks.push((at, total));
            }
        }

        pub(crate) fn finish(mut self) -> Vec<u8> {
            let meta_offset = self.out.len() as u64;
            self.out.push(2);
            self.devices.sort_by(|a, b| a.0.cmp(&b.0));
            let mut leaves = Vec::new();
            for (_, series) in &mut self.devices {
                series.sort_by(|a, b| a.name.cmp(&b.name));
                let first = self.out.len() as u64;
                for s in series.iter() {
                    let multi = s.chunks.len() > 1;
                    self.out.push(s.kind | u8::from(multi));
                    varstr(&mut self.out, &s.name);
                    self.out.push(s.t.id());
                    let mut list = Vec::new();
                    let mut total = St::of(&[], None, &[]);
                    for (off, st) in &s.chunks {
                        list.extend_from_slice(&off.to_be_bytes());
                        if multi {
                            st.put(&mut list, s.t);
                        }
                        total.merge(st);
                    }
                    uvarint(&mut self.out, list.len() as u32);
                    total.put(&mut self.out, s.t);
                    self.out.extend_from_slice(&list);
                }
                leaves.push((first, series[0].name.clone(), self.out.len() as u64));
            }
            let mut roots = Vec::new();
            for (first, name, end) in leaves {
                roots.push(self.out.len() as u64);
                uvarint(&mut self.out, 1);
                varstr(&mut self.out, &name);
                self.out.extend_from_slice(&first.to_be_bytes());
                self.out.extend_from_slice(&end.to_be_bytes());
                self.out.push(3);
            }
            let meta_start = self.out.len();
            uvarint(&mut self.out, self.devices.len() as u32);
            for ((path, _), off) in self.devices.iter().zip(&roots) {
                varstr(&mut self.out, path);
                self.out.extend_from_slice(&off.to_be_bytes());
            }
            self.out
                .extend_from_slice(&(meta_start as u64).to_be_bytes());
            self.out.push(1);
            self.out.extend_from_slice(&meta_offset.to_be_bytes());
            // An empty bloom filter.
            self.out.extend_from_slice(&[0, 0x80, 0x02, 5]);
            let size = (self.out.len() - meta_start) as i32;
            self.out.extend_from_slice(&size.to_be_bytes());
            self.out.extend_from_slice(b"TsFile");
            self.out
        }
    }
}

/// Columns of every type for `n` rows.
fn columns(n: usize) -> Vec<(&'static str, crate::tablet::Column, Vec<Encoding>)> {
    use crate::tablet::Column;
    use Encoding as E;
    vec![
        (
            "b",
            Column::Boolean((0..n).map(|i| i % 3 == 0 || i > n / 2).collect()),
            vec![E::Plain, E::Rle],
        ),
        (
            "i",
            Column::Int32(
                (0..n)
                    .map(|i| if i < 20 { 5 } else { (i * i) as i32 - 777 })
                    .collect(),
            ),
            vec![E::Plain, E::Rle, E::Ts2Diff, E::Gorilla],
        ),
        (
            "l",
            Column::Int64((0..n).map(|i| (i as i64 - 50) * 1_000_000_007).collect()),
            vec![E::Plain, E::Rle, E::Ts2Diff, E::Gorilla],
        ),
        (
            "f",
            Column::Float((0..n).map(|i| i as f32 * 0.25 - 7.5).collect()),
            vec![E::Plain, E::Rle, E::Ts2Diff, E::Gorilla],
        ),
        (
            "d",
            Column::Double((0..n).map(|i| i as f64 * 0.75 - 30.0).collect()),
            vec![E::Plain, E::Rle, E::Ts2Diff, E::Gorilla],
        ),
        (
            "t",
            Column::Text((0..n).map(|i| format!("v{}", i % 9).into_bytes()).collect()),
            vec![E::Plain, E::Dictionary],
        ),
    ]
}

#[test]
fn v3_files_with_every_codec_and_encoding_read_back() {
    // Covers what no sample has: v3 with GZIP, ZSTD, LZMA2 (and SNAPPY,
    // LZ4, none), RLE and TS_2DIFF for FLOAT and DOUBLE (FloatDecoder),
    // DICTIONARY, multi-page aligned chunks with empty pages and an empty
    // value chunk, several chunks of one series.
    let n = 250;
    let times: Vec<i64> = (0..n as i64).map(|i| 10_000 + i * 7).collect();
    for c in super::compress::tests::ALL {
        let mut w = writer::Writer::new();
        w.device("root.w.plain");
        let mut expected = Rows::new();
        for (name, col, encs) in columns(n) {
            for e in encs {
                let m = format!("{name}_{}", e.name());
                // Two chunks: rows [0, 100) and [100, n), pages of 32 rows.
                w.plain(
                    &m,
                    &times[..100],
                    &col.gather(&(0..100).collect::<Vec<_>>()),
                    e,
                    c,
                    32,
                );
                w.plain(
                    &m,
                    &times[100..],
                    &col.gather(&(100..n).collect::<Vec<_>>()),
                    e,
                    c,
                    32,
                );
                expected.insert(
                    ("root.w.plain".into(), m),
                    times
                        .iter()
                        .enumerate()
                        .map(|(r, &t)| (t, Some(col.get(r))))
                        .collect(),
                );
            }
        }
        w.device("root.w.aligned");
        let cols = columns(n);
        let mut specs = Vec::new();
        for (k, (name, col, encs)) in cols.iter().enumerate() {
            for (j, e) in encs.iter().enumerate() {
                // Nulls: rows 40..80 of every column (a page of 32 rows at
                // 32..64 is all null: an empty page), and a pattern.
                let nulls: Vec<bool> = (0..n)
                    .map(|r| (32..64).contains(&r) || (r + k + j) % 5 == 0)
                    .collect();
                let m = format!("{name}_{}", e.name());
                expected.insert(
                    ("root.w.aligned".into(), m.clone()),
                    times
                        .iter()
                        .enumerate()
                        .map(|(r, &t)| (t, (!nulls[r]).then(|| col.get(r))))
                        .collect(),
                );
                specs.push((m, col.clone(), nulls, *e));
            }
        }
        specs.push((
            "z_all_null".into(),
            crate::tablet::Column::Int64(vec![0; n]),
            vec![true; n],
            Encoding::Plain,
        ));
        expected.insert(
            ("root.w.aligned".into(), "z_all_null".into()),
            times.iter().map(|&t| (t, None)).collect(),
        );
        let specs: Vec<(&str, crate::tablet::Column, Vec<bool>, Encoding)> = specs
            .iter()
            .map(|(m, c, n, e)| (m.as_str(), c.clone(), n.clone(), *e))
            .collect();
        w.aligned(&times, &specs, c, 32);
        let bytes = w.finish();
        let f = TsFile::new(bytes).unwrap_or_else(|e| panic!("{c}: {e}"));
        let s = f.validate().unwrap_or_else(|e| panic!("{c}: {e}"));
        assert_eq!(s.devices, 2, "{c}");
        let got = collect(&f);
        assert_eq!(got.len(), expected.len(), "{c}");
        for (k, want) in &expected {
            assert_eq!(&got[k], want, "{c} {k:?}");
        }
    }
}

#[test]
fn a_page_over_the_limits_is_refused_before_it_is_allocated() {
    use crate::tablet::Column;
    let times: Vec<i64> = (0..100).collect();
    let mut w = writer::Writer::new();
    w.device("root.sg.d");
    w.plain(
        "s",
        &times,
        &Column::Int64((0..100).collect()),
        Encoding::Plain,
        Compression::Lz4,
        100,
    );
    let mut b = w.finish();
    // The page header after the chunk header: a 2-byte uncompressed size.
    let chunk_at = 7 + 1 + 1 + "root.sg.d".len();
    let h = ChunkHeader::read(&mut super::io::Cur::new(&b[chunk_at..], chunk_at as u64)).unwrap();
    let page_at = chunk_at + h.header_len as usize;
    assert!(b[page_at] & 0x80 != 0 && b[page_at + 1] & 0x80 == 0);
    b[page_at..page_at + 2].copy_from_slice(&[0xff, 0x7f]); // 16383
    let small = Limits {
        max_page_bytes: 4096,
        max_page_points: 1000,
    };
    let e = TsFile::with_limits(b.clone(), small)
        .unwrap()
        .validate()
        .unwrap_err();
    assert!(e.is_unsupported(), "{e}");
    assert!(
        e.to_string()
            .contains("page of 16383 bytes decompressed, over the reader's limit of 4096"),
        "{e}"
    );
    assert_eq!(
        (e.device(), e.series(), e.offset()),
        (Some("root.sg.d"), Some("s"), Some(page_at as u64))
    );
    // Within the limits the size is simply wrong: damage.
    let e = TsFile::new(b).unwrap().validate().unwrap_err();
    assert!(e.is_corruption(), "{e}");
    // Rows: a page of 100 rows over a 50-row limit.
    let mut w = writer::Writer::new();
    w.device("root.sg.d");
    w.plain(
        "s",
        &times,
        &Column::Int64((0..100).collect()),
        Encoding::Plain,
        Compression::Uncompressed,
        100,
    );
    let few = Limits {
        max_page_bytes: 4096,
        max_page_points: 50,
    };
    let e = TsFile::with_limits(w.finish(), few)
        .unwrap()
        .validate()
        .unwrap_err();
    assert!(
        e.is_unsupported() && e.to_string().contains("max_page_points"),
        "{e}"
    );
}
