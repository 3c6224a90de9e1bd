//! `edgepipe server` starting up: what a failed start leaves behind.

use std::process::Command;
use std::time::Duration;

/// A node that cannot listen (its port is taken) exits with an error naming
/// the address and leaves no new data directory (a 64 MiB segment and a
/// lock file used to stay behind).
#[test]
fn a_failed_bind_leaves_no_data_directory() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("never");
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgepipe"))
        .args(["server", "--rpc-address", "127.0.0.1", "--rpc-port", &port])
        .arg("--data-dir")
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server neither started nor failed within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(
        !dir.exists(),
        "a failed start left {} behind",
        dir.display()
    );
    drop(taken);
}
