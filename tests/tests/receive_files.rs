//! What a real IoTDB 1.2 sender pushes into a node (issue 9), sent through
//! Apache's generated Python thrift code (`tests/python/receive.py`) and
//! read back with the official client: every TsFile sample as file pieces
//! and a seal (v3 written by IoTDB 1.2's own writer, v4 by the PyPI
//! `tsfile` package, plus files that package writes in the test: several
//! devices, every type and encoding it offers, nulls, many pages);
//! InsertNodes, raw WAL entries and batches of both; a transfer resumed
//! after 1803; damaged and truncated files refused with nothing applied;
//! partial files deleted when their connection drops or the node crashes.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::{config_file, read_frame, run_python, sql, wait_until, workspace, NodeProc, Tmpfs};
use protocol::message::{call, read_reply, Proto};
use protocol::pipe;
use protocol::rpc::{TPipeTransferReq, TPipeTransferResp};

const LIMIT: Duration = Duration::from_secs(240);

fn samples() -> PathBuf {
    workspace().join("protocol/tests/data")
}

fn sample(name: &str) -> String {
    samples().join(name).display().to_string()
}

/// The files under a node's directory of received files.
fn received_files(data: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let root = data.join("system/pipe/receiver");
    for d in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        out.push(d.path());
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            out.push(f.path());
        }
    }
    out
}

#[test]
fn every_sample_and_files_of_the_pypi_writer_load_through_apaches_code() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("cloud"), &[]);
    let out = tmp.path().join("pypi");
    let port = node.port.to_string();
    let r = run_python(
        "receive.py",
        &[
            "files",
            &port,
            &samples().display().to_string(),
            &out.display().to_string(),
        ],
        LIMIT,
    );
    assert_eq!(r.trim(), "ok");
    assert!(
        received_files(&node.data_dir).iter().all(|p| p.is_dir()),
        "sealed files are deleted"
    );
    node.stop();
}

#[test]
fn insert_nodes_wal_entries_and_batches_are_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("cloud"), &[]);
    let r = run_python("receive.py", &["insertnode", &node.port.to_string()], LIMIT);
    assert_eq!(r.trim(), "ok");
    node.stop();
}

#[test]
fn a_transfer_resumed_after_1803_lands_once_and_damaged_files_apply_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("resume"), &[]);
    let file = sample("v3_nonaligned_lz4.tsfile");
    let r = run_python(
        "receive.py",
        &["resume", &node.port.to_string(), &file],
        LIMIT,
    );
    assert_eq!(r.trim(), "ok");
    node.stop();
    let node = NodeProc::start(&tmp.path().join("damaged"), &[]);
    let file = sample("v3_multipage_deg3_uncompressed.tsfile");
    let r = run_python(
        "receive.py",
        &["damaged", &node.port.to_string(), &file],
        LIMIT,
    );
    assert_eq!(r.trim(), "ok");
    let log = node.log_text();
    assert!(
        log.contains("pipeTransfer request refused") && log.contains("damaged.tsfile"),
        "{log}"
    );
    node.stop();
}

fn transfer(s: &mut std::net::TcpStream, kind: i16, body: Vec<u8>) -> TPipeTransferResp {
    let req = TPipeTransferReq {
        version: Some(pipe::VERSION),
        type_: Some(kind),
        body: Some(body),
    };
    s.write_all(&call(Proto::Binary, "pipeTransfer", 1, -1, &req))
        .unwrap();
    read_reply(&read_frame(s)).unwrap()
}

#[test]
fn partial_files_go_with_a_dropped_connection_and_with_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cloud");
    let node = NodeProc::start(&data, &[]);
    let file = sample("v3_aligned_snappy.tsfile");
    // Apache's client sends half a file and closes the connection.
    let r = run_python("receive.py", &["cut", &node.port.to_string(), &file], LIMIT);
    assert_eq!(r.trim(), "ok");
    assert!(
        wait_until(Duration::from_secs(10), || received_files(&data).is_empty()),
        "left behind: {:?}",
        received_files(&data)
    );
    // Half a file, then kill -9: the next start deletes it.
    let addr: SocketAddr = node.addr().parse().unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(
        transfer(&mut s, pipe::HANDSHAKE, pipe::handshake_body("ms"))
            .status
            .code,
        200
    );
    let r = transfer(
        &mut s,
        pipe::TRANSFER_FILE_PIECE,
        pipe::file_piece_body("x.tsfile", 0, &bytes[..300]),
    );
    assert_eq!(r.status.code, 200);
    let partial: Vec<_> = received_files(&data)
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(partial.len(), 1, "{partial:?}");
    assert_eq!(std::fs::metadata(&partial[0]).unwrap().len(), 300);
    node.kill9();
    drop(s);
    let node = NodeProc::start(&data, &[]);
    assert!(
        received_files(&data).is_empty(),
        "{:?}",
        received_files(&data)
    );
    node.stop();
}

/// A node told to stop right after it announced its port stops gracefully
/// (exit 0, the log closed cleanly), not killed by the signal: the
/// handlers are installed before the announcement. Found by the test
/// above, whose last start is followed at once by a stop.
#[test]
fn a_stop_right_after_the_start_is_graceful() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..10 {
        NodeProc::start(&tmp.path().join(format!("n{i}")), &[]).stop();
    }
}

/// A real full disk (a 16 MiB tmpfs under the node's data directory):
/// file pieces that do not fit are refused with 1804 naming the full disk,
/// the partial file keeps its length, nothing panics, the node keeps
/// serving, and once the connection is gone its space is back. Needs root
/// (CI runs as root).
#[test]
fn a_full_disk_refuses_pieces_by_name_and_the_node_keeps_serving() {
    let Some(fs) = Tmpfs::mount(16 << 20) else {
        return;
    };
    let data = fs.path().join("node");
    let cfg = config_file(
        &tmp_config_dir().join("full"),
        &["wal_file_size_threshold_in_byte=1048576"],
    );
    let node = NodeProc::start(&data, &[&cfg[0], &cfg[1]]);
    let addr: SocketAddr = node.addr().parse().unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(
        transfer(&mut s, pipe::HANDSHAKE, pipe::handshake_body("ms"))
            .status
            .code,
        200
    );
    let piece = vec![0x5au8; 1 << 20];
    let mut at = 0i64;
    let refused = loop {
        let r = transfer(
            &mut s,
            pipe::TRANSFER_FILE_PIECE,
            pipe::file_piece_body("big.tsfile", at, &piece),
        );
        if r.status.code != 200 {
            break r;
        }
        at += piece.len() as i64;
        assert!(at < 64 << 20, "a 16 MiB disk took {at} bytes");
    };
    assert_eq!(
        refused.status.code, 1804,
        "{:?} at {at}",
        refused.status.message
    );
    assert_eq!(refused.body, Some(pipe::file_piece_reply_body(-1)));
    let m = refused.status.message.unwrap();
    assert!(
        m.contains("disk is full") && m.contains("big.tsfile"),
        "{m}"
    );
    // The file is as long as the pieces that were written: the sender may
    // resume there (an offset past it is answered with its length).
    let r = transfer(
        &mut s,
        pipe::TRANSFER_FILE_PIECE,
        pipe::file_piece_body("big.tsfile", at + 1, b"x"),
    );
    assert_eq!(
        (r.status.code, r.body),
        (1803, Some(pipe::file_piece_reply_body(at)))
    );
    // The node serves on; the connection gone, the space is back.
    assert!(sql(&node.addr(), "show databases").is_some());
    drop(s);
    assert!(wait_until(Duration::from_secs(10), || received_files(
        &data
    )
    .iter()
    .all(|p| p.is_dir())));
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(
        transfer(&mut s, pipe::HANDSHAKE, pipe::handshake_body("ms"))
            .status
            .code,
        200
    );
    let r = transfer(
        &mut s,
        pipe::TRANSFER_FILE_PIECE,
        pipe::file_piece_body("again.tsfile", 0, &piece),
    );
    assert_eq!(r.status.code, 200, "{:?}", r.status.message);
    drop(s);
    node.stop();
}

/// A directory for configuration files outside the test's tmpfs.
fn tmp_config_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("receive-files-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
