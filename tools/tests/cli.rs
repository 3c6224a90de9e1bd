//! Runs the built `edgepipe` binary on real logs and checks its output.

use std::path::Path;
use std::process::{Command, Output};

use wal::{Config, FsyncPolicy, Log};

fn edgepipe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgepipe"))
        .args(args)
        .env("TZ", "UTC")
        .env_remove("RUST_LOG")
        .output()
        .expect("run edgepipe")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn config() -> Config {
    Config {
        segment_bytes: 4096,
        fsync: FsyncPolicy::Never,
        ..Config::default()
    }
}

/// A log of 200 records `rec-N` over several segments, with two consumers.
fn make_log(dir: &Path) -> Log {
    let log = Log::open(dir, config()).unwrap();
    for i in 0..200u64 {
        log.append((i % 3) as u8, format!("rec-{i}").as_bytes())
            .unwrap();
    }
    log.register_consumer("pipe-a", 0).unwrap();
    log.commit("pipe-a", 150).unwrap();
    log.register_consumer("pipe-b", 200).unwrap();
    log
}

#[test]
fn info_lists_segments_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path());
    log.close().unwrap();
    let o = edgepipe(&["wal", "info", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("log start offset:  0"), "{s}");
    assert!(s.contains("log end offset:    200"), "{s}");
    assert!(s.contains("durable offset:    200"), "{s}");
    assert!(s.contains("| BaseOffset | Records |"), "{s}");
    assert!(s.contains("active |"), "{s}");
    let n = log.segments().len();
    assert!(s.contains(&format!("Total segments = {n}")), "{s}");

    let o = edgepipe(&["wal", "info", "--json", dir.path().to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["log_end_offset"], 200);
    assert_eq!(v["segments"].as_array().unwrap().len(), n);
    let total: u64 = v["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["records"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 200);
}

/// Issue 10 ("small truths"): `wal info` and `wal verify` give one byte
/// count, under one name. They disagreed by 16 bytes a segment: `info`
/// counted the segment header, `verify` did not.
#[test]
fn info_and_verify_count_the_same_record_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path());
    log.close().unwrap();
    let segments = log.segments();
    assert!(segments.len() > 1, "the test wants several segments");
    // What the records take: 200 batches of one record each.
    let want: u64 = (0..200u64)
        .map(|i| wal::format::batch_len([format!("rec-{i}").as_bytes()].into_iter()) as u64)
        .sum();
    drop(log);
    let d = dir.path().to_str().unwrap();

    let info: serde_json::Value =
        serde_json::from_slice(&edgepipe(&["wal", "info", "--json", d]).stdout).unwrap();
    let per_segment: u64 = info["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["record_bytes"].as_u64().unwrap())
        .sum();
    let verify: serde_json::Value =
        serde_json::from_slice(&edgepipe(&["wal", "verify", "--json", d]).stdout).unwrap();
    assert_eq!(verify["record_bytes"].as_u64(), Some(want), "{verify}");
    assert_eq!(info["record_bytes"].as_u64(), Some(want), "{info}");
    assert_eq!(per_segment, want);

    let text = stdout(&edgepipe(&["wal", "info", d]));
    assert!(
        text.contains(&format!("record bytes:      {want}")),
        "{text}"
    );
    assert!(text.contains("| RecordBytes |"), "{text}");
    let text = stdout(&edgepipe(&["wal", "verify", d]));
    assert!(
        text.contains(&format!("200 intact record(s), {want} record bytes")),
        "{text}"
    );
}

/// Issue 10 ("small truths"): a read-only `wal info` beside a running
/// writer cannot know the writer's durable offset; it showed the last
/// checkpoint's offset as "durable offset". It now names what it can vouch
/// for: the recovery point, durable as of the last checkpoint.
#[test]
fn read_only_info_beside_a_writer_names_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        fsync: FsyncPolicy::Interval(std::time::Duration::from_millis(5)),
        // No checkpoint while the test looks: the one written at open
        // (offset 0) is what a read-only look finds.
        checkpoint_interval: std::time::Duration::from_secs(3600),
        ..config()
    };
    let log = Log::open(dir.path(), cfg).unwrap();
    for i in 0..10u64 {
        log.append(1, format!("rec-{i}").as_bytes()).unwrap();
    }
    log.wait_durable(9).unwrap();
    assert_eq!(log.durable_offset(), 10);
    let d = dir.path().to_str().unwrap();
    let o = edgepipe(&["wal", "info", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("log end offset:    10"), "{s}");
    assert!(
        s.contains("recovery point:    0 (durable as of the writer's last checkpoint"),
        "{s}"
    );
    assert!(!s.contains("durable offset"), "{s}");
    let v: serde_json::Value =
        serde_json::from_slice(&edgepipe(&["wal", "info", "--json", d]).stdout).unwrap();
    assert_eq!(v["recovery_point"], 0);
    assert!(v["durable_offset"].is_null(), "{v}");

    // After a clean close every record is durable, and it says so.
    log.close().unwrap();
    let s = stdout(&edgepipe(&["wal", "info", d]));
    assert!(
        s.contains("durable offset:    10 (closed cleanly: every record is durable)"),
        "{s}"
    );
    assert!(!s.contains("recovery point"), "{s}");
}

#[test]
fn dump_from_offset_time_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path());
    let d = dir.path().to_str().unwrap();
    // Read-only beside the running writer.
    let o = edgepipe(&["wal", "dump", d, "--from", "42", "--limit", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(
        s.contains("\"rec-42\"") && s.contains("\"rec-44\"") && !s.contains("rec-45"),
        "{s}"
    );
    assert!(s.contains("Total line number = 3"), "{s}");

    let o = edgepipe(&["wal", "dump", d, "--from", "198", "--json"]);
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["offset"], 198);
    assert_eq!(lines[0]["kind"], 0);
    assert_eq!(lines[1]["payload_hex"], "7265632d313939"); // "rec-199"

    // --from-time lands on the first record at or after the time.
    let mut r = log.reader(120).unwrap();
    let t = r.try_next().unwrap().unwrap().arrival_us();
    let iso = chrono_free_iso(t);
    let want = log.offset_for_time(t).unwrap();
    let o = edgepipe(&[
        "wal",
        "dump",
        d,
        "--from-time",
        &iso,
        "--limit",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(v["offset"], want);

    let o = edgepipe(&["wal", "seek", d, "--time", &iso]);
    assert_eq!(stdout(&o).trim(), want.to_string());
    let o = edgepipe(&["wal", "seek", d, "--time", "2999-01-01T00:00:00Z"]);
    assert!(stdout(&o).starts_with("200 (the log end"), "{}", stdout(&o));
    let o = edgepipe(&["wal", "seek", d, "--time", "tomorrow"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not an ISO 8601 time"),
        "{}",
        stderr(&o)
    );
}

/// µs since the epoch as RFC 3339 UTC with microseconds, without chrono.
fn chrono_free_iso(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn offsets_show_lag() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path());
    let d = dir.path().to_str().unwrap();
    let o = edgepipe(&["wal", "offsets", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("| CommittedOffset | LagRecords |"), "{s}");
    assert!(
        s.lines()
            .any(|l| l.contains("pipe-a |             150 |         50 |")),
        "{s}"
    );
    assert!(
        s.lines()
            .any(|l| l.contains("pipe-b |             200 |          0 |")),
        "{s}"
    );
    let o = edgepipe(&["wal", "offsets", d, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let a = &v["consumers"][0];
    assert_eq!(a["consumer"], "pipe-a");
    assert_eq!(a["lag_records"], 50);
    let bytes = a["lag_bytes"].as_u64().unwrap();
    // 50 records of 37 + len("rec-1NN") bytes each.
    assert_eq!(bytes, 50 * (37 + 7));
    drop(log);
}

#[test]
fn verify_finds_damage_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path());
    log.close().unwrap();
    drop(log);
    let d = dir.path().to_str().unwrap();
    let o = edgepipe(&["wal", "verify", d]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("ok: every record and index is intact"));
    assert!(
        stdout(&o).contains("200 intact record(s)"),
        "{}",
        stdout(&o)
    );

    // Flip a payload byte of record 5 (each record is 37 + 5 bytes here).
    let seg = dir.path().join("00000000000000000000.log");
    let intact = std::fs::read(&seg).unwrap();
    let mut b = intact.clone();
    let pos = 16 + 5 * 42;
    b[pos + 38] ^= 0x20;
    std::fs::write(&seg, b).unwrap();
    let o = edgepipe(&["wal", "verify", d]);
    assert_eq!(o.status.code(), Some(1));
    let s = stdout(&o);
    assert!(
        s.contains(&format!("DAMAGED: first bad offset 5 at byte {pos}")),
        "{s}"
    );
    assert!(s.contains("crc mismatch"), "{s}");
    let o = edgepipe(&["wal", "verify", d, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["offset"], 5);
    assert_eq!(v["problems"][0]["position"], pos);

    // A deleted index, in an otherwise intact log, is damage too: exit 1,
    // with a DAMAGED line naming the missing file.
    std::fs::write(&seg, intact).unwrap();
    let o = edgepipe(&["wal", "verify", d]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    std::fs::remove_file(dir.path().join("00000000000000000000.timeindex")).unwrap();
    let o = edgepipe(&["wal", "verify", d]);
    let s = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{s}");
    assert!(
        s.lines().any(|l| l.starts_with("DAMAGED:")
            && l.contains("00000000000000000000.timeindex")
            && l.contains("No such file")),
        "{s}"
    );
    assert!(!s.contains("ok: every record"), "{s}");
}

/// `edgepipe store verify DATA_DIR` checks a node's data directory:
/// checkpoints, every chunk file byte for byte, and the change log; it
/// names each damaged file (and series) and exits 1.
#[test]
fn store_verify_names_damaged_chunk_files_and_series() {
    use node::event::Event;
    use protocol::tablet::{Column, Tablet};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    {
        let cfg = Config {
            segment_bytes: 1 << 20,
            ..config()
        };
        let log = std::sync::Arc::new(Log::open(data.join("wal"), cfg).unwrap());
        let s = node::store::Store::open(
            &data.join("store"),
            log.clone(),
            node::store::StoreConfig::default(),
        )
        .unwrap();
        for (dev, base) in [("root.sg.a", 1.0), ("root.sg.b", 2.0)] {
            s.write(Event::Tablet(Tablet {
                device: dev.into(),
                measurements: vec!["x".into()],
                nulls: vec![None],
                columns: vec![Column::Double(vec![base; 500])],
                times: (0..500).collect(),
                aligned: false,
            }))
            .unwrap();
        }
        s.flush().unwrap();
        log.close().unwrap();
    }
    let d = data.to_str().unwrap();
    let o = edgepipe(&["store", "verify", d]);
    let s = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{s}{}", stderr(&o));
    assert!(
        s.contains("checked 1 chunk file(s), 2 series chunk(s)"),
        "{s}"
    );
    assert!(
        s.contains("ok: every checkpoint, chunk and record is intact"),
        "{s}"
    );
    // 16 bytes flipped in root.sg.a.x's values (bytes 8..4008: its regular
    // times are not stored).
    let file = data.join("store/00000000000000000001.chunks");
    let mut b = std::fs::read(&file).unwrap();
    for x in &mut b[2000..2016] {
        *x ^= 0xff;
    }
    std::fs::write(&file, b).unwrap();
    let o = edgepipe(&["store", "verify", d]);
    let s = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{s}");
    assert!(
        s.lines().any(|l| l.starts_with("DAMAGED:")
            && l.contains("00000000000000000001.chunks")
            && l.contains("root.sg.a.x")
            && l.contains("crc mismatch")),
        "{s}"
    );
    let o = edgepipe(&["store", "verify", d, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["store"]["problems"][0]["series"], "root.sg.a.x");
    let o = edgepipe(&["store", "verify", "/nonexistent/edgepipe"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bad_directories_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for cmd in ["info", "verify", "offsets"] {
        let o = edgepipe(&["wal", cmd, d]);
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        let e = stderr(&o);
        assert!(
            e.starts_with("edgepipe: ") && e.contains("no segment files"),
            "{cmd}: {e}"
        );
    }
    let o = edgepipe(&["wal", "info", "/nonexistent/edgepipe"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/edgepipe"),
        "{}",
        stderr(&o)
    );
}

/// Issue 10: the demo deleted its data directory, so its "data in …" line
/// pointed nowhere; `--keep` keeps both nodes' data and prints the commands
/// that inspect it. The pipe is created after the stream was written, so it
/// sends that history first.
#[test]
fn demo_pipes_the_seed_data_and_both_ends_match() {
    let o = Command::new(env!("CARGO_BIN_EXE_edgepipe"))
        .args(["demo", "--keep"])
        .env("TZ", "UTC")
        .output()
        .expect("run demo");
    let s = stdout(&o);
    assert!(o.status.success(), "{s}\n{}", stderr(&o));
    assert!(s.contains("edge> CREATE PIPE edge2cloud"), "{s}");
    assert!(
        s.contains("edge> pipe edge2cloud sent its history: 50 records (2000000 points)"),
        "{s}"
    );
    assert!(s.contains("cloud: select ** from root.vehicle"), "{s}");
    assert_eq!(s.matches("Total line number = 6").count(), 2, "{s}");
    assert!(
        s.contains("root.demo.stream: 500000 rows on the edge, 500000 rows on the cloud"),
        "{s}"
    );
    assert!(
        s.contains("MATCH: the cloud holds exactly the edge's data"),
        "{s}"
    );
    assert!(s.contains("both nodes stopped cleanly"), "{s}");

    // The data is still there, and the printed command reads it.
    let root = s
        .lines()
        .find_map(|l| l.strip_prefix("Data kept in "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no \"Data kept in\" line: {s}"))
        .to_string();
    let root = Path::new(&root);
    let edge_wal = root.join("edge").join("wal");
    assert!(
        s.contains(&format!("wal offsets {}", edge_wal.display())),
        "{s}"
    );
    assert!(s.contains("cli -h 127.0.0.1 -p "), "{s}");
    let o = edgepipe(&["wal", "offsets", edge_wal.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let pipe = v["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["consumer"] == "pipe/edge2cloud")
        .unwrap_or_else(|| panic!("no pipe consumer: {v}"));
    assert_eq!(pipe["lag_records"], 0, "{v}");
    assert!(root.join("cloud").join("wal").is_dir());
    std::fs::remove_dir_all(root).unwrap();
}
