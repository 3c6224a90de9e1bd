//! Property tests over arbitrary and mutated bytes for every decoder a peer
//! reaches before logging in (issue 7, DESIGN invariant 11): thrift frames
//! and calls with each request's arguments (binary and compact), tablets
//! (client RPC, record values, `Tablet.serialize()` bodies), `pipeTransfer`
//! bodies (handshake, batch, the in-place read, IoTDB 1.3's compressed
//! requests) and TsBlocks (the client's side of a query). Each input must decode or fail with an error, never
//! panic, and the decoder's peak allocation must stay under
//! [`K`] × the input's length + [`C`], measured by a counting global
//! allocator in this test binary (per thread, so parallel tests do not
//! disturb each other).
//!
//! CI runs a bounded number of cases (a few seconds per target); a longer
//! run: `PROPTEST_CASES=200000 cargo test --release -p protocol --test decoders`.

use proptest::prelude::*;
use protocol::message::{call, Call, Proto};
use protocol::pipe;
use protocol::pipe::compress;
use protocol::rpc::*;
use protocol::tablet::{Column, Tablet};
use protocol::tsblock;
use thrift::protocol::TSerializable;

/// Bytes allocated per byte of input, at most.
const K: usize = 32;
/// Bytes allocated whatever the input, at most.
const C: usize = 4 << 10;

#[path = "support/fuzz.rs"]
mod fuzz;
use fuzz::{mutated, peak};

/// Checks `f`'s peak allocation against the ceiling for `input`.
fn bounded<R>(what: &str, input: &[u8], f: impl FnOnce() -> R) -> Result<(), TestCaseError> {
    let used = peak(f);
    let ceiling = K * input.len() + C;
    prop_assert!(
        used <= ceiling,
        "{what}: {used} bytes allocated for {} bytes of input (ceiling {ceiling})",
        input.len()
    );
    Ok(())
}

fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 1000;
    }
    c.failure_persistence = None;
    c
}

fn sample_tablet(rows: usize) -> Tablet {
    Tablet {
        device: "root.sg.d1".into(),
        measurements: ["b", "i", "l", "f", "d", "t"].map(String::from).to_vec(),
        columns: vec![
            Column::Boolean((0..rows).map(|r| r % 2 == 0).collect()),
            Column::Int32((0..rows as i32).collect()),
            Column::Int64((0..rows as i64).collect()),
            Column::Float((0..rows).map(|r| r as f32).collect()),
            Column::Double((0..rows).map(|r| r as f64).collect()),
            Column::Text((0..rows).map(|r| format!("v{r}").into_bytes()).collect()),
        ],
        nulls: vec![
            None,
            Some((0..rows).map(|r| r % 3 == 0).collect()),
            None,
            None,
            Some((0..rows).map(|r| r % 5 == 0).collect()),
            Some((0..rows).map(|r| r % 4 == 1).collect()),
        ],
        times: (0..rows as i64).collect(),
        aligned: true,
    }
}

/// Every request struct the client port decodes, each as a call frame in
/// `proto` (payload only, after the length).
fn request_frames(proto: Proto) -> Vec<Vec<u8>> {
    let t = sample_tablet(5);
    let insert = node_like_tablet_request(&t);
    let frames = vec![
        call(
            proto,
            "openSession",
            1,
            1,
            &TSOpenSessionReq {
                client_protocol: Some(2),
                zone_id: Some("+08:00".into()),
                username: Some("root".into()),
                password: Some("root".into()),
                configuration: Some(
                    [("version".to_string(), "V_1_0".to_string())]
                        .into_iter()
                        .collect(),
                ),
            },
        ),
        call(
            proto,
            "executeStatementV2",
            2,
            1,
            &TSExecuteStatementReq {
                session_id: Some(1),
                statement: Some("select ** from root".into()),
                statement_id: Some(1),
                fetch_size: Some(10),
                timeout: None,
                enable_redirect_query: None,
                jdbc_query: None,
            },
        ),
        call(proto, "insertTablet", 3, 1, &insert),
        call(
            proto,
            "insertTablets",
            4,
            1,
            &TSInsertTabletsReq {
                session_id: Some(1),
                prefix_paths: Some(vec!["root.a".into(), "root.b".into()]),
                measurements_list: Some(vec![vec!["x".into()], vec!["y".into(), "z".into()]]),
                values_list: Some(vec![vec![1; 8], vec![2; 16]]),
                timestamps_list: Some(vec![vec![0; 8], vec![0; 8]]),
                types_list: Some(vec![vec![2], vec![2, 2]]),
                size_list: Some(vec![1, 1]),
                is_aligned: Some(false),
            },
        ),
        call(
            proto,
            "insertRecords",
            5,
            1,
            &TSInsertRecordsReq {
                session_id: Some(1),
                prefix_paths: Some(vec!["root.a".into()]),
                measurements_list: Some(vec![vec!["x".into()]]),
                values_list: Some(vec![vec![1, 0, 0, 0, 7]]),
                timestamps: Some(vec![9]),
                is_aligned: None,
            },
        ),
        call(
            proto,
            "insertStringRecord",
            6,
            1,
            &TSInsertStringRecordReq {
                session_id: Some(1),
                prefix_path: Some("root.a".into()),
                measurements: Some(vec!["x".into(), "y".into()]),
                values: Some(vec!["1".into(), "true".into()]),
                timestamp: Some(3),
                is_aligned: None,
                timeout: None,
            },
        ),
        call(
            proto,
            "pipeTransfer",
            7,
            -1,
            &TPipeTransferReq {
                version: Some(1),
                type_: Some(pipe::TRANSFER_TABLET_RAW),
                body: Some(t.serialize_v12()),
            },
        ),
    ];
    frames.into_iter().map(|f| f[4..].to_vec()).collect()
}

/// An `insertTablet` request as the official clients encode one.
fn node_like_tablet_request(t: &Tablet) -> TSInsertTabletReq {
    TSInsertTabletReq {
        session_id: Some(1),
        prefix_path: Some(t.device.clone()),
        measurements: Some(t.measurements.clone()),
        values: Some(t.rpc_values()),
        timestamps: Some(t.times.iter().flat_map(|x| x.to_be_bytes()).collect()),
        types: Some(t.columns.iter().map(|c| c.data_type() as i32).collect()),
        size: Some(t.rows() as i32),
        is_aligned: Some(false),
        write_to_table: None,
    }
}

fn arg<T: TSerializable>(frame: &[u8]) -> usize {
    match Call::parse(frame) {
        Ok(mut c) => c.arg::<T>().map(|a| a.is_some() as usize).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Everything the client port does with a frame before login: the call's
/// header, the argument as each request type, the argument at field id -1,
/// and the in-place read of a pipeTransfer.
fn decode_frame(frame: &[u8]) -> usize {
    let mut n = 0;
    if let Ok(c) = Call::parse(frame) {
        if let Some(at) = c.args_at {
            n += pipe::transfer_in_place(frame, at).is_some() as usize;
        }
    }
    if let Ok(mut c) = Call::parse(frame) {
        n += c.arg_at::<TPipeTransferReq>(-1).is_ok() as usize;
    }
    if let Ok(mut c) = Call::parse(frame) {
        n += c.arg_i64().is_ok() as usize;
    }
    n + arg::<TSOpenSessionReq>(frame)
        + arg::<TSCloseSessionReq>(frame)
        + arg::<TSSetTimeZoneReq>(frame)
        + arg::<TSExecuteStatementReq>(frame)
        + arg::<TSFetchResultsReq>(frame)
        + arg::<TSCloseOperationReq>(frame)
        + arg::<TSInsertTabletReq>(frame)
        + arg::<TSInsertTabletsReq>(frame)
        + arg::<TSInsertRecordReq>(frame)
        + arg::<TSInsertRecordsReq>(frame)
        + arg::<TSInsertRecordsOfOneDeviceReq>(frame)
        + arg::<TSInsertStringRecordReq>(frame)
        + arg::<TPipeTransferReq>(frame)
}

/// The tablet decoders a request's bytes reach: the RPC layout (all
/// types), one record's values, and the serialized layout three ways.
fn decode_tablet_bytes(b: &[u8]) -> usize {
    let half = b.len() / 2;
    let size = if b.len() >= 4 {
        i32::from_be_bytes(b[..4].try_into().unwrap())
    } else {
        0
    };
    let mut n = 0;
    n += Tablet::from_rpc(
        "root.d".into(),
        vec!["a".into(), "b".into(), "c".into()],
        &[5, 1, 0],
        &b[half..],
        &b[..half],
        size,
        false,
    )
    .is_ok() as usize;
    n += Tablet::from_record("root.d".into(), vec!["a".into(), "b".into()], b, 1, false).is_ok()
        as usize;
    n += Tablet::deserialize_v12(b).is_ok() as usize;
    n += Tablet::deserialize_v12_prefix(b).is_ok() as usize;
    n + Tablet::deserialize_v12_body(b).is_ok() as usize
}

fn decode_pipe_body(b: &[u8]) -> usize {
    pipe::read_handshake(b).is_ok() as usize + pipe::read_batch(b).is_ok() as usize
}

/// A type-300 body (IoTDB 1.3's compressed request) is allowed what its
/// bounds say ([`compress::inflate_bound`]) twice over (a step's input and
/// output), and a codec's working memory: an .xz dictionary of up to
/// 8 MiB (IoTDB's preset 6 writes that whatever the input), a zstd window.
fn compressed_ceiling(input: &[u8]) -> usize {
    2 * compress::inflate_bound(input.len(), compress::MAX_INFLATED) + (8 << 20) + (512 << 10)
}

/// Unpacks a type-300 body and decodes the request inside as a batch.
fn decode_compressed(b: &[u8]) -> usize {
    match compress::decompress(b) {
        Ok(inner) => 1 + pipe::read_batch(inner.body()).is_ok() as usize,
        Err(_) => 0,
    }
}

/// The sample batch compressed by each compressor, and by two in a chain.
fn sample_compressed() -> Vec<Vec<u8>> {
    let batch = sample_batch();
    let mut chains: Vec<Vec<compress::Compressor>> =
        compress::Compressor::ALL.iter().map(|&c| vec![c]).collect();
    chains.push(vec![
        compress::Compressor::Snappy,
        compress::Compressor::Gzip,
    ]);
    chains
        .iter()
        .map(|c| compress::compressed_body(c, pipe::TRANSFER_TABLET_BATCH, &[&batch]).unwrap())
        .collect()
}

fn sample_batch() -> Vec<u8> {
    let a = sample_tablet(4).serialize_v12();
    let b = sample_tablet(1).serialize_v12();
    pipe::batch_body([&a[..], &b[..]].into_iter())
}

fn sample_tsblock() -> Vec<u8> {
    let t = sample_tablet(20);
    tsblock::encode(&t.times, &t.columns, &t.nulls)
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..512)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frames_arbitrary(body in any_bytes(), proto in prop::bool::ANY) {
        // A real message header, then anything: the argument decoders run.
        let mut frame = if proto {
            vec![0x80, 1, 0, 1, 0, 0, 0, 12]
        } else {
            vec![0x82, 0x21, 0x00, 12]
        };
        frame.extend_from_slice(b"pipeTransfer");
        if proto {
            frame.extend_from_slice(&[0, 0, 0, 1]);
        }
        frame.extend_from_slice(&body);
        bounded("frame", &frame, || decode_frame(&frame))?;
        bounded("raw bytes", &body, || decode_frame(&body))?;
    }

    #[test]
    fn frames_mutated(
        (i, frame) in (0..14usize).prop_flat_map(|i| {
            let proto = if i % 2 == 0 { Proto::Binary } else { Proto::Compact };
            let frames = request_frames(proto);
            let f = frames[(i / 2) % frames.len()].clone();
            (Just(i), mutated(f))
        })
    ) {
        bounded(&format!("frame {i}"), &frame, || decode_frame(&frame))?;
    }

    #[test]
    fn tablets_arbitrary(b in any_bytes()) {
        bounded("tablet bytes", &b, || decode_tablet_bytes(&b))?;
    }

    #[test]
    fn tablets_mutated(b in (1..40usize).prop_flat_map(|rows| mutated(sample_tablet(rows).serialize_v12()))) {
        bounded("serialized tablet", &b, || decode_tablet_bytes(&b))?;
    }

    #[test]
    fn pipe_bodies_arbitrary(b in any_bytes()) {
        bounded("pipe body", &b, || decode_pipe_body(&b))?;
    }

    #[test]
    fn pipe_bodies_mutated(b in prop_oneof![
        mutated(sample_batch()),
        mutated(pipe::handshake_body("ms")),
    ]) {
        bounded("pipe body", &b, || decode_pipe_body(&b))?;
    }

    #[test]
    fn compressed_bodies_arbitrary(b in any_bytes(), id in 0..6u8) {
        // A plausible header (one compressor, a length), then anything.
        let mut body = vec![1, id];
        body.extend_from_slice(&b);
        for x in [&body, &b] {
            let used = peak(|| decode_compressed(x));
            prop_assert!(used <= compressed_ceiling(x), "{used} bytes for {} bytes", x.len());
        }
    }

    #[test]
    fn compressed_bodies_mutated(b in (0..6usize).prop_flat_map(|i| mutated(sample_compressed()[i].clone()))) {
        let used = peak(|| decode_compressed(&b));
        prop_assert!(used <= compressed_ceiling(&b), "{used} bytes for {} bytes", b.len());
    }

    #[test]
    fn tsblocks_arbitrary(b in any_bytes()) {
        bounded("tsblock", &b, || tsblock::decode(&b).is_ok())?;
    }

    #[test]
    fn tsblocks_mutated(b in mutated(sample_tsblock())) {
        bounded("tsblock", &b, || tsblock::decode(&b).is_ok())?;
    }
}

/// The valid samples decode (the mutations start from real inputs).
#[test]
fn samples_decode() {
    for proto in [Proto::Binary, Proto::Compact] {
        for f in request_frames(proto) {
            assert!(decode_frame(&f) >= 2, "{proto:?} {f:?}");
        }
    }
    assert_eq!(pipe::read_batch(&sample_batch()).unwrap().tablets.len(), 2);
    for c in sample_compressed() {
        assert_eq!(decode_compressed(&c), 2);
    }
    assert_eq!(tsblock::decode(&sample_tsblock()).unwrap().rows(), 20);
    let t = sample_tablet(7);
    assert_eq!(Tablet::deserialize_v12(&t.serialize_v12()).unwrap(), t);
}

/// Issue 13: a batch body reserved room for as many tablets as it had
/// bytes, about 144 bytes per byte of body.
#[test]
fn a_batch_reserves_only_what_its_body_holds() {
    let mut body = pipe::batch_head(0).to_vec();
    let n = 10_000;
    body[8..].copy_from_slice(&(n as i32).to_be_bytes());
    body.resize(12 + n, 0);
    let used = peak(|| pipe::read_batch(&body));
    assert!(
        used <= 16 * body.len(),
        "{used} bytes allocated for a {}-byte batch body",
        body.len()
    );
}

/// Issue 13: a TsBlock of all-null columns decoded into one 32-byte cell
/// per row and column, 256 times its bytes.
#[test]
fn an_all_null_tsblock_costs_about_its_bytes() {
    let rows = 8_000;
    let cols = 100;
    let times: Vec<i64> = (0..rows as i64).collect();
    let columns = vec![Column::Int64(vec![0; rows]); cols];
    let nulls = vec![Some(vec![true; rows]); cols];
    let b = tsblock::encode(&times, &columns, &nulls);
    let used = peak(|| tsblock::decode(&b).unwrap());
    assert!(
        used <= 4 * b.len(),
        "{used} bytes allocated for a {}-byte tsblock",
        b.len()
    );
    let d = tsblock::decode(&b).unwrap();
    assert!(d.columns[7].cells(rows).all(|c| c.is_none()));
}

/// Issue 7 finding 5, in the decoder: absent value columns cost nothing per
/// row, and rows without timestamps are refused.
#[test]
fn absent_columns_are_not_materialised() {
    let rows = 100_000usize;
    let absent = 300usize;
    let mut b = Vec::new();
    let put = |b: &mut Vec<u8>, s: &[u8]| {
        b.extend_from_slice(&(s.len() as i32).to_be_bytes());
        b.extend_from_slice(s);
    };
    put(&mut b, b"root.amp.d");
    b.extend_from_slice(&(rows as i32).to_be_bytes());
    b.push(1);
    b.extend_from_slice(&(absent as i32).to_be_bytes());
    for c in 0..absent {
        b.push(1);
        put(&mut b, format!("m{c}").as_bytes());
        b.extend_from_slice(&[4, 2, 0, 0, 0, 0, 0]);
    }
    b.push(1);
    for r in 0..rows {
        b.extend_from_slice(&(r as i64).to_be_bytes());
    }
    b.push(0);
    b.push(1);
    b.extend(std::iter::repeat_n(0u8, absent));
    b.push(0);
    let used = peak(|| Tablet::deserialize_v12(&b).unwrap());
    assert!(used <= 2 * b.len(), "{used} bytes for {} bytes", b.len());
    assert!(Tablet::deserialize_v12(&b).unwrap().columns.is_empty());
}

/// Issue 11: an .xz stream names its dictionary's size in its block
/// header, and the decoder allocated it whatever the output's length: a
/// 100-byte compressed request (or TsFile page) with a 4 GiB dictionary
/// made the receiver allocate 4 GiB. Now refused before the allocation.
#[test]
fn an_xz_dictionary_is_bounded_by_the_output() {
    let data = b"one small request".repeat(4);
    let inner = compress::inner_request(pipe::TRANSFER_TABLET_RAW, &[&data]);
    let mut xz = compress::Compressor::Lzma2.compress(&inner).unwrap();
    // The block header at 12: its size, flags, optional sizes, then the
    // LZMA2 filter (id 0x21, one property byte: the dictionary size).
    let h = 12;
    let size = (usize::from(xz[h]) + 1) * 4;
    let flags = xz[h + 1];
    let mut at = h + 2;
    for bit in [0x40u8, 0x80] {
        if flags & bit != 0 {
            while xz[at] & 0x80 != 0 {
                at += 1;
            }
            at += 1;
        }
    }
    assert_eq!(&xz[at..at + 2], &[0x21, 1], "the LZMA2 filter");
    // 40: a dictionary of 4 GiB - 1 (the largest the format names).
    xz[at + 2] = 40;
    let mut crc = flate2::Crc::new();
    crc.update(&xz[h..h + size - 4]);
    xz[h + size - 4..h + size].copy_from_slice(&crc.sum().to_le_bytes());
    let mut body = vec![1, compress::Compressor::Lzma2.id()];
    body.extend_from_slice(&(inner.len() as i32).to_be_bytes());
    body.extend_from_slice(&xz);
    let mut got = None;
    let used = peak(|| got = Some(compress::decompress(&body).map(|_| ())));
    assert!(
        used < 16 << 20,
        "{used} bytes allocated for {} bytes",
        body.len()
    );
    let err = got.unwrap().unwrap_err();
    assert!(err.contains("dictionary"), "{err}");
}
