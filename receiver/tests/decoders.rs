//! Property tests over arbitrary and mutated bytes for everything a sender
//! reaches on the receiving side without logging in (DESIGN invariant
//! 11): `pipeTransfer` bodies of every type through the receiver's own
//! dispatch (InsertNodes, WAL entries, batches, file pieces and seals, on a
//! connection that made its handshake), the legacy calls' arguments as
//! thrift frames (`handshake`, `sendFile`, `sendPipeData`, binary and
//! compact) and the PipeData they carry, through `send_file` and
//! `send_pipe_data`. Each input must be answered or refused, never panic,
//! and the peak allocation while handling it must stay under [`K`] × the
//! input's length + [`C`], measured by a counting global allocator in this
//! test binary (per thread).
//!
//! CI runs a bounded number of cases; a longer run:
//! `PROPTEST_CASES=100000 cargo test --release -p receiver --test decoders`.

use proptest::prelude::*;
use protocol::insert_node;
use protocol::legacy::PipeData;
use protocol::message::{call, call_args, Call, Proto};
use protocol::pipe;
use protocol::rpc::{TSendFileArgs, TSendPipeDataArgs, TSyncIdentityInfo, TSyncTransportMetaInfo};
use protocol::tablet::{Column, Tablet};
use receiver::{Apply, Receiver, ReceiverConfig, ReceiverState};

/// Bytes allocated per byte of input, at most.
const K: usize = 32;
/// Bytes allocated whatever the input, at most (a file name, a path, a
/// status message, the TsFile reader's first window).
const C: usize = 16 << 10;

#[path = "../../protocol/tests/support/fuzz.rs"]
mod fuzz;
use fuzz::{mutated, peak};

fn bounded<R>(what: &str, input: &[u8], f: impl FnOnce() -> R) -> Result<(), TestCaseError> {
    // The receiver and its handshakes exist before the input arrives.
    with_rig(|_| ());
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
        c.cases = 500;
    }
    c.failure_persistence = None;
    c
}

/// Accepts everything, keeps nothing.
struct Discard;

impl Apply for Discard {
    fn apply(&self, _: Vec<(Tablet, &[u8])>) -> Result<Option<u64>, (i32, String)> {
        Ok(None)
    }
    fn check_series(&self, _: &[receiver::SeriesCheck]) -> Result<(), (i32, String)> {
        Ok(())
    }
    fn delete(&self, _: Vec<String>, _: i64, _: i64) -> Result<Option<u64>, (i32, String)> {
        Ok(None)
    }
    fn create_database(&self, _: &str) -> Result<Option<u64>, (i32, String)> {
        Ok(None)
    }
    fn clear_database(&self, _: &str) -> Result<Option<u64>, (i32, String)> {
        Ok(None)
    }
}

/// A receiver in a temporary directory, and a connection that made both
/// handshakes (so pieces are written and legacy calls are served).
struct Rig {
    rx: Receiver,
    state: ReceiverState,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::open(ReceiverConfig {
            precision: "ms".into(),
            dir: dir.path().join("receiver"),
            ip_white_list: Default::default(),
            version: "1.1".into(),
            max_file_size: 1 << 20,
        })
        .unwrap();
        let mut state = ReceiverState::default();
        let r = rx.transfer_parts(
            &mut state,
            Some(1),
            Some(1),
            &pipe::handshake_body("ms"),
            &Discard,
        );
        assert_eq!(r.0.status.code, 200);
        let info = TSyncIdentityInfo {
            pipe_name: Some("p".into()),
            create_time: Some(1),
            version: Some("1.1".into()),
            database: Some(String::new()),
        };
        assert_eq!(rx.legacy_handshake(&mut state, &info, &Discard).0.code, 200);
        Rig {
            rx,
            state,
            _dir: dir,
        }
    }
}

thread_local! {
    static RIG: std::cell::RefCell<Option<Rig>> = const { std::cell::RefCell::new(None) };
}

fn with_rig<R>(f: impl FnOnce(&mut Rig) -> R) -> R {
    RIG.with(|r| {
        let mut r = r.borrow_mut();
        f(r.get_or_insert_with(Rig::new))
    })
}

fn tablet() -> Tablet {
    Tablet {
        device: "root.sg.d1".into(),
        measurements: ["b", "i", "t"].map(String::from).to_vec(),
        columns: vec![
            Column::Boolean(vec![true, false, true]),
            Column::Int32(vec![1, 2, 3]),
            Column::Text(vec![b"x".to_vec(), vec![], b"zz".to_vec()]),
        ],
        nulls: vec![None, Some(vec![false, true, false]), None],
        times: vec![1, 2, 3],
        aligned: false,
    }
}

/// Valid bodies of every request type a sender sends before login.
fn transfer_samples() -> Vec<(i16, Vec<u8>)> {
    let t = tablet();
    let file = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../protocol/tests/data/v3_aligned_snappy.tsfile"
    ))
    .unwrap();
    vec![
        (
            pipe::TRANSFER_TABLET_INSERT_NODE,
            insert_node::encode_insert_tablet_node(&t, "1"),
        ),
        (
            pipe::TRANSFER_TABLET_INSERT_NODE,
            insert_node::encode_insert_row_node(&t, 1, "2"),
        ),
        (
            pipe::TRANSFER_TABLET_BINARY,
            insert_node::encode_wal_entry(&t, None, 1, 2),
        ),
        (
            pipe::TRANSFER_TABLET_BINARY,
            insert_node::encode_wal_entry(&t, Some(2), 1, 2),
        ),
        (
            pipe::TRANSFER_TABLET_BATCH,
            insert_node::encode_batch(
                &[insert_node::encode_wal_entry(&t, Some(0), 1, 2)],
                &[insert_node::encode_insert_row_node(&t, 1, "x")],
                std::slice::from_ref(&t),
            ),
        ),
        (
            pipe::TRANSFER_FILE_PIECE,
            pipe::file_piece_body("f.tsfile", 0, &file),
        ),
        (
            pipe::TRANSFER_FILE_SEAL,
            pipe::file_seal_body("f.tsfile", file.len() as i64),
        ),
    ]
}

/// Valid legacy call frames (payloads after the length).
fn legacy_frames(proto: Proto) -> Vec<Vec<u8>> {
    let info = TSyncIdentityInfo {
        pipe_name: Some("p".into()),
        create_time: Some(5),
        version: Some("1.1".into()),
        database: Some("root.sg".into()),
    };
    let file = TSendFileArgs {
        meta_info: Some(TSyncTransportMetaInfo {
            file_name: Some("1-1-0-0.tsfile".into()),
            start_index: Some(0),
        }),
        buff: Some(b"TsFile\x03".to_vec()),
    };
    let data = TSendPipeDataArgs {
        buff: Some(
            PipeData::Deletion {
                serial: 1,
                database: "root.sg".into(),
                start: 0,
                end: 9,
                path_pattern: "root.sg.**".into(),
            }
            .serialize(),
        ),
    };
    [
        call(proto, "handshake", 1, -1, &info),
        call_args(proto, "sendFile", 2, &file),
        call_args(proto, "sendPipeData", 3, &data),
    ]
    .into_iter()
    .map(|f| f[4..].to_vec())
    .collect()
}

fn pipe_data_samples() -> Vec<Vec<u8>> {
    vec![
        PipeData::TsFile {
            serial: -1,
            parent_dir: String::new(),
            file_name: "1-1-0-0.tsfile".into(),
        }
        .serialize(),
        PipeData::Deletion {
            serial: 7,
            database: "root.sg".into(),
            start: i64::MIN,
            end: i64::MAX,
            path_pattern: "root.sg.**".into(),
        }
        .serialize(),
    ]
}

/// Decodes a legacy call frame as the node does and hands its arguments
/// to the receiver.
fn legacy_call(frame: &[u8]) -> usize {
    let Ok(mut c) = Call::parse(frame) else {
        return 0;
    };
    with_rig(|rig| match c.name.as_str() {
        "handshake" => match c.arg_at::<TSyncIdentityInfo>(-1) {
            Ok(Some(info)) => {
                rig.rx
                    .legacy_handshake(&mut rig.state, &info, &Discard)
                    .0
                    .code as usize
            }
            _ => 0,
        },
        "sendFile" => match c.args::<TSendFileArgs>() {
            Ok(a) => {
                let meta = a.meta_info.unwrap_or_default();
                let buff = a.buff.unwrap_or_default();
                rig.rx
                    .send_file(&mut rig.state, &meta, &buff)
                    .map_or(0, |s| s.code as usize)
            }
            Err(_) => 0,
        },
        "sendPipeData" => match c.args::<TSendPipeDataArgs>() {
            Ok(a) => {
                let buff = a.buff.unwrap_or_default();
                rig.rx
                    .send_pipe_data(&mut rig.state, &buff, &Discard)
                    .map_or(0, |s| s.0.code as usize)
            }
            Err(_) => 0,
        },
        _ => 0,
    })
}

fn transfer(kind: i16, body: &[u8]) -> i32 {
    with_rig(|rig| {
        rig.rx
            .transfer_parts(&mut rig.state, Some(1), Some(kind), body, &Discard)
            .0
            .status
            .code
    })
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..512)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn transfer_bodies_arbitrary(b in any_bytes(), kind in 2i16..8) {
        bounded(&format!("type {kind}"), &b, || transfer(kind, &b))?;
    }

    #[test]
    fn transfer_bodies_mutated(
        (kind, b) in (0..7usize).prop_flat_map(|i| {
            let (kind, body) = transfer_samples().swap_remove(i);
            (Just(kind), mutated(body))
        })
    ) {
        bounded(&format!("type {kind}"), &b, || transfer(kind, &b))?;
    }

    #[test]
    fn legacy_frames_mutated(
        frame in (0..6usize).prop_flat_map(|i| {
            let proto = if i % 2 == 0 { Proto::Binary } else { Proto::Compact };
            mutated(legacy_frames(proto).swap_remove(i / 2))
        })
    ) {
        bounded("legacy call", &frame, || legacy_call(&frame))?;
    }

    #[test]
    fn pipe_data_arbitrary_and_mutated(
        b in prop_oneof![any_bytes(), mutated(pipe_data_samples()[0].clone()), mutated(pipe_data_samples()[1].clone())]
    ) {
        bounded("PipeData", &b, || with_rig(|rig| rig.rx.send_pipe_data(&mut rig.state, &b, &Discard).map(|s| s.0.code)))?;
    }
}

/// The samples are answered with success (the mutations start from real
/// inputs).
#[test]
fn samples_are_served() {
    for (kind, body) in transfer_samples() {
        assert_eq!(transfer(kind, &body), 200, "type {kind}");
    }
    for proto in [Proto::Binary, Proto::Compact] {
        for f in legacy_frames(proto) {
            assert_eq!(legacy_call(&f), 200, "{:?}", Call::parse(&f).unwrap().name);
        }
    }
}
