//! TLS (issue 12): a certificate authority and node certificates made here
//! (rcgen), nodes serving TLS with IoTDB's keys (`enable_thrift_ssl`,
//! `key_store_path`, `key_store_pwd`), and every client over it: the
//! official Python client running the seed's example, `edgepipe cli`
//! (`-usessl true -ts`), and pipes whose connectors have
//! `connector.ssl.*`. A wrong CA and a wrong host name are refused with
//! their reasons; plaintext and stalled clients on a TLS port are closed
//! within the connection timeout, and a TLS client on a plaintext port gets
//! an error, not a hang.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{edgepipe_bin, run_python, sql, wait_timeout, wait_until, write_config, NodeProc};
use node::client::{ClientTls, Session};

const WAIT: Duration = Duration::from_secs(60);

/// The node certificate's names: the address the tests connect to, and a
/// DNS name; `localhost` is not among them (the wrong host name).
const NODE_NAMES: [&str; 2] = ["127.0.0.1", "cloud.edgepipe.test"];

/// Certificates for one test, as files.
struct Pki {
    /// The CA that signed the node's certificate (PEM).
    ca: PathBuf,
    /// Another CA, which signed nothing here (PEM).
    other_ca: PathBuf,
    /// The node's certificate and key in one PEM file.
    node_pem: PathBuf,
    /// The same chain and key as a PKCS#12 store, password `storepass`.
    node_p12: PathBuf,
    /// The CA as a PKCS#12 trust store, password `trustpass`.
    ca_p12: PathBuf,
}

fn ca(name: &str) -> (rcgen::CertificateParams, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    (p, key)
}

fn pki(dir: &Path) -> Pki {
    let (ca_params, ca_key) = ca("edgepipe test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let (other_params, other_key) = ca("another CA");
    let other_cert = other_params.self_signed(&other_key).expect("other CA");

    let key = rcgen::KeyPair::generate().expect("key");
    let mut p =
        rcgen::CertificateParams::new(NODE_NAMES.map(String::from).to_vec()).expect("params");
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "cloud node");
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let node = p.signed_by(&key, &issuer).expect("node certificate");

    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write pem");
        path
    };
    let ca = write("ca.pem", ca_cert.pem());
    let other_ca = write("other-ca.pem", other_cert.pem());
    let node_pem = write(
        "node.pem",
        format!("{}{}{}", node.pem(), ca_cert.pem(), key.serialize_pem()),
    );

    let p12_cert = |der: &[u8]| p12_keystore::Certificate::from_der(der).expect("cert");
    let mut ks = p12_keystore::KeyStore::new();
    ks.add_entry(
        "node",
        p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
            vec![7u8; 20],
            p12_keystore::PrivateKey::from_der(&key.serialize_der()).expect("key"),
            vec![p12_cert(node.der()), p12_cert(ca_cert.der())],
        )),
    );
    let node_p12 = dir.join("node.p12");
    std::fs::write(&node_p12, ks.writer("storepass").write().expect("p12")).expect("write");
    let mut ts = p12_keystore::KeyStore::new();
    ts.add_entry(
        "ca",
        p12_keystore::KeyStoreEntry::Certificate(p12_cert(ca_cert.der())),
    );
    let ca_p12 = dir.join("ca.p12");
    std::fs::write(&ca_p12, ts.writer("trustpass").write().expect("p12")).expect("write");
    Pki {
        ca,
        other_ca,
        node_pem,
        node_p12,
        ca_p12,
    }
}

/// Starts a node serving TLS with `key_store` (and `extra` settings).
fn tls_node(dir: &Path, key_store: &Path, password: &str, extra: &[(&str, &str)]) -> NodeProc {
    let ks = key_store.display().to_string();
    let mut settings = vec![
        ("enable_thrift_ssl", "true"),
        ("key_store_path", ks.as_str()),
        ("key_store_pwd", password),
    ];
    settings.extend_from_slice(extra);
    let cfg = write_config(&dir.with_extension("properties"), &settings);
    NodeProc::start(dir, &["--config", cfg.to_str().expect("utf-8 path")])
}

fn trust(ca: &Path) -> ClientTls {
    ClientTls::from_trust_store(ca, "").expect("trust store")
}

/// Runs SQL over TLS as root.
fn tls_sql(addr: &str, ca: &Path, statement: &str) -> Option<node::client::Rows> {
    let mut s = Session::open_with(addr, "root", "root", Some(&trust(ca)))
        .unwrap_or_else(|e| panic!("connect {addr} with TLS: {e}"));
    let r = s
        .execute(statement)
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    let _ = s.close();
    r
}

/// `edgepipe cli ARGS`, within 60 s: (success, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(edgepipe_bin())
        .arg("cli")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run edgepipe cli");
    let (mut out, mut err) = (
        child.stdout.take().expect("stdout"),
        child.stderr.take().expect("stderr"),
    );
    let o = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_timeout(&mut child, WAIT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (o, e) = (o.join().unwrap_or_default(), e.join().unwrap_or_default());
    let status = status.unwrap_or_else(|| panic!("edgepipe cli {args:?} hung:\n{o}\n{e}"));
    (status.success(), o, e)
}

#[test]
fn python_client_and_cli_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki(tmp.path());
    let node = tls_node(&tmp.path().join("cloud"), &pki.node_pem, "", &[]);
    let port = node.port.to_string();
    let ca = pki.ca.to_str().unwrap();

    // The official client over TLS (use_ssl, ca_certs): the seed's example.
    assert_eq!(
        run_python("tls.py", &["seed", &port, ca], WAIT).trim(),
        "ok"
    );
    // The same rows through edgepipe cli over TLS (IoTDB's flags).
    let (ok, out, err) = cli(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-usessl",
        "true",
        "-ts",
        ca,
        "-e",
        "select count(s0), count(s1) from root.vehicle.d0",
    ]);
    assert!(ok, "cli over TLS failed:\n{out}\n{err}");
    assert!(
        out.contains("|                        2|                        2|")
            || out.contains("|2|2|")
            || out.lines().any(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                cells.len() >= 3 && cells[1] == "2" && cells[2] == "2"
            }),
        "counts of the seed's rows:\n{out}"
    );
    // And the Rust client, with the CA as a PKCS#12 trust store.
    let p12 = ClientTls::from_trust_store(&pki.ca_p12, "trustpass").expect("p12 trust store");
    let mut s = Session::open_with(&node.addr(), "root", "root", Some(&p12)).expect("p12 trust");
    let rows = s.execute("select ** from root.vehicle").unwrap().unwrap();
    assert_eq!(rows.rows.len(), 6);
    s.close().unwrap();

    // A CA that did not sign the node's certificate: refused, named.
    let other = pki.other_ca.to_str().unwrap();
    let (ok, out, err) = cli(&[
        "-p",
        &port,
        "-usessl",
        "true",
        "-ts",
        other,
        "-e",
        "show pipeserver",
    ]);
    assert!(!ok, "cli with the wrong CA succeeded:\n{out}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("unknown CA"),
        "wrong CA: {err}"
    );
    let py = run_python("tls.py", &["refused", &port, other], WAIT);
    assert!(py.contains("CERTIFICATE_VERIFY_FAILED"), "python: {py}");

    // A host name the certificate does not name: refused, named.
    let (ok, out, err) = cli(&[
        "-h",
        "localhost",
        "-p",
        &port,
        "-usessl",
        "true",
        "-ts",
        ca,
        "-e",
        "show pipeserver",
    ]);
    assert!(!ok, "cli with the wrong host name succeeded:\n{out}");
    assert!(
        err.contains("wrong host name") && err.contains("localhost"),
        "wrong host name: {err}"
    );

    // A plaintext client on the TLS port: an error that says why, at once.
    let start = Instant::now();
    let (ok, _, err) = cli(&["-p", &port, "-e", "show pipeserver"]);
    assert!(!ok);
    assert!(
        err.contains("if the node serves TLS") && err.contains("-usessl true"),
        "plaintext cli: {err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let py = run_python("tls.py", &["plain", &port], WAIT);
    assert!(py.starts_with("refused after"), "python plaintext: {py}");
    assert!(
        wait_until(Duration::from_secs(5), || node
            .log_text()
            .contains("not a TLS client")),
        "the node logs the plaintext client: {}",
        node.log_text()
    );
    node.stop();
}

#[test]
fn a_pkcs12_key_store_serves_and_bad_key_stores_stop_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki(tmp.path());
    let node = tls_node(&tmp.path().join("p12"), &pki.node_p12, "storepass", &[]);
    let rows = tls_sql(&node.addr(), &pki.ca, "show pipeserver").expect("rows");
    assert_eq!(rows.rows.len(), 1);
    node.stop();

    // A wrong password, a missing file, no key: the node does not start,
    // and says why.
    for (i, (path, pwd, want)) in [
        (&pki.node_p12, "wrong", "the password does not open"),
        (&tmp.path().join("missing.pem"), "", "missing.pem"),
        (&pki.ca, "", "no private key"),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tmp.path().join(format!("bad{i}"));
        let p = path.display().to_string();
        let cfg = write_config(
            &dir.with_extension("properties"),
            &[
                ("enable_thrift_ssl", "true"),
                ("key_store_path", &p),
                ("key_store_pwd", pwd),
            ],
        );
        let e = NodeProc::try_start(&dir, &["--config", cfg.to_str().unwrap()])
            .err()
            .unwrap_or_else(|| panic!("started with {p} / {pwd}"));
        assert!(e.contains("key_store_path") && e.contains(want), "{e}");
        // Named as the key store's trouble, not the data directory's, and
        // nothing is made in the data directory (the test made it).
        assert!(!e.contains("cannot open data directory"), "{e}");
        let made: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert!(made.is_empty(), "{} holds {made:?}", dir.display());
    }
}

/// Reads until the peer closes; returns how long that took, or `None`
/// if it stayed open for `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
}

#[test]
fn plaintext_and_stalled_clients_are_cut_and_tls_on_a_plaintext_port_fails_fast() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki(tmp.path());
    let timeout_ms = 1500;
    let node = tls_node(
        &tmp.path().join("cloud"),
        &pki.node_pem,
        "",
        &[("dn_connection_timeout_ms", &timeout_ms.to_string())],
    );
    let addr: std::net::SocketAddr = node.addr().parse().unwrap();
    let timeout = Duration::from_millis(timeout_ms);
    let limit = timeout + Duration::from_secs(10);

    // A plaintext openSession: closed at once.
    let mut plain = TcpStream::connect(addr).unwrap();
    let frame = protocol::message::call(
        protocol::message::Proto::Binary,
        "openSession",
        0,
        1,
        &protocol::rpc::TSOpenSessionReq {
            client_protocol: Some(2),
            zone_id: Some("+00:00".into()),
            username: Some("root".into()),
            password: Some("root".into()),
            configuration: None,
        },
    );
    plain.write_all(&frame).unwrap();
    let took = closed_within(&mut plain, limit).expect("a plaintext client stays open");
    assert!(
        took < timeout,
        "a plaintext client took {took:?} to be closed"
    );

    // A client that stalls mid-handshake (a record header, then nothing),
    // and one that sends nothing: both closed after the connection timeout.
    let t0 = Instant::now();
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).unwrap();
    let mut silent = TcpStream::connect(addr).unwrap();
    for (what, s) in [("mid-handshake", &mut stalled), ("silent", &mut silent)] {
        closed_within(s, limit).unwrap_or_else(|| panic!("a {what} client stays open"));
        let took = t0.elapsed();
        assert!(
            took + Duration::from_millis(100) >= timeout && took < limit,
            "a {what} client was closed after {took:?} (timeout {timeout:?})"
        );
    }
    // The socket closes when the handshake's timeout drops it; the line
    // saying why is written just after.
    assert!(
        wait_until(Duration::from_secs(5), || {
            let log = node.log_text();
            log.contains("not a TLS client")
                && log.contains("the TLS handshake did not finish within")
        }),
        "{}",
        node.log_text()
    );
    // The node still serves TLS.
    assert_eq!(
        tls_sql(&node.addr(), &pki.ca, "show pipeserver")
            .unwrap()
            .rows
            .len(),
        1
    );

    // A TLS client on a plaintext port: an error naming the cause, not a
    // wait for the node's timeout.
    let plain_node = NodeProc::start(&tmp.path().join("plain"), &[]);
    let start = Instant::now();
    let e = Session::open_with(&plain_node.addr(), "root", "root", Some(&trust(&pki.ca)))
        .expect_err("TLS to a plaintext port");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let e = e.to_string();
    assert!(
        e.contains(&plain_node.addr()) && e.contains("does it serve TLS"),
        "{e}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || plain_node
            .log_text()
            .contains("a TLS handshake on a plaintext port")),
        "{}",
        plain_node.log_text()
    );
    // Plain clients there are untouched.
    assert_eq!(
        sql(&plain_node.addr(), "show pipeserver")
            .unwrap()
            .rows
            .len(),
        1
    );
    plain_node.stop();
    node.stop();
}

/// Writes `n` rows of one DOUBLE column to `device` through the Rust client.
fn write_rows(addr: &str, device: &str, n: i64) {
    let mut s = Session::open(addr, "root", "root").unwrap();
    let t = protocol::tablet::Tablet {
        device: device.into(),
        measurements: vec!["x".into()],
        columns: vec![protocol::tablet::Column::Double(
            (0..n).map(|i| i as f64).collect(),
        )],
        nulls: vec![None],
        times: (1..=n).collect(),
        aligned: false,
    };
    s.insert_tablet(&t).unwrap();
    s.close().unwrap();
}

/// `count(x)` of `device` on a TLS node, or 0.
fn count_on(addr: &str, ca: &Path, device: &str) -> i64 {
    count_with(addr, Some(&trust(ca)), device)
}

/// `count(x)` of `device` on a node (TLS when `tls` is given), or 0.
fn count_with(addr: &str, tls: Option<&ClientTls>, device: &str) -> i64 {
    let Ok(mut s) = Session::open_with(addr, "root", "root", tls) else {
        return 0;
    };
    let n = match s.execute(&format!("select count(x) from {device}")) {
        Ok(Some(r)) => r
            .rows
            .first()
            .and_then(|r| r.1.first().cloned().flatten())
            .map(|v| v.to_string().parse().unwrap_or(0))
            .unwrap_or(0),
        _ => 0,
    };
    let _ = s.close();
    n
}

/// SHOW PIPE `id`'s ExceptionMessage on the edge.
fn exception_of(edge: &str, id: &str) -> String {
    let r = sql(edge, &format!("show pipe {id}")).expect("rows");
    let col = r
        .columns
        .iter()
        .position(|c| c == "ExceptionMessage")
        .expect("ExceptionMessage");
    r.rows[0].1[col]
        .as_ref()
        .map(|v| v.to_string())
        .unwrap_or_default()
}

#[test]
fn pipes_replicate_over_tls_and_refuse_bad_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki(tmp.path());
    let pipe_port = e2e::free_port();
    let cloud = tls_node(
        &tmp.path().join("cloud"),
        &pki.node_pem,
        "",
        &[("pipe_server_port", &pipe_port.to_string())],
    );
    // The pipe server serves TLS too (for the legacy connector).
    tls_sql(&cloud.addr(), &pki.ca, "START PIPESERVER");
    let edge_cfg = write_config(
        &tmp.path().join("edge.properties"),
        &[
            ("max_number_of_sync_file_retry", "1"),
            ("pipe_connector_retry_interval_ms", "100"),
        ],
    );
    let edge = NodeProc::start(
        &tmp.path().join("edge"),
        &["--config", edge_cfg.to_str().unwrap()],
    );
    let (e, c) = (edge.addr(), cloud.port);
    let (ca, ca_p12) = (pki.ca.display(), pki.ca_p12.display());
    let ssl = format!("'connector.ssl.enable'='true', 'connector.ssl.trust-store-path'='{ca}'");
    let pipes = [
        // The sync connector, IoTDB's key names.
        ("psync", "root.tsync", format!("'connector'='iotdb-thrift-sync-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{c}', {ssl}")),
        // The async connector.
        ("pasync", "root.tasync", format!("'connector'='iotdb-thrift-async-connector', 'connector.node-urls'='127.0.0.1:{c}', {ssl}")),
        // The preset of later IoTDB versions in IoTDB 1.3's spelling, with
        // a PKCS#12 trust store.
        ("pssl", "root.tssl", format!("'sink'='iotdb-thrift-ssl-sink', 'sink.node-urls'='127.0.0.1:{c}', 'sink.ssl.trust-store-path'='{ca_p12}', 'sink.ssl.trust-store-pwd'='trustpass'")),
        // The legacy connector into the cloud's pipe server.
        ("plegacy", "root.tlegacy", format!("'connector'='iotdb-legacy-pipe-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{pipe_port}', {ssl}")),
    ];
    for (id, db, _) in &pipes {
        write_rows(&e, &format!("{db}.d"), 100);
        let _ = id;
    }
    for (id, db, conn) in &pipes {
        sql(
            &e,
            &format!("create pipe {id} WITH EXTRACTOR ('extractor.pattern'='{db}') WITH CONNECTOR ({conn})"),
        );
        sql(&e, &format!("start pipe {id}"));
    }
    for (id, db, _) in &pipes {
        let device = format!("{db}.d");
        assert!(
            wait_until(WAIT, || count_on(&cloud.addr(), &pki.ca, &device) == 100),
            "pipe {id}: {} of 100 rows arrived over TLS; SHOW PIPE: {}",
            count_on(&cloud.addr(), &pki.ca, &device),
            exception_of(&e, id)
        );
    }
    // Realtime too, on a connection kept open.
    write_rows(&e, "root.tsync.d2", 50);
    assert!(wait_until(WAIT, || count_on(
        &cloud.addr(),
        &pki.ca,
        "root.tsync.d2"
    ) == 50));

    // A CA that did not sign the cloud's certificate, and a host name the
    // certificate does not name: refused, the reason in SHOW PIPES.
    let other = pki.other_ca.display();
    sql(&e, &format!("create pipe pasyncwrongca WITH CONNECTOR ('connector'='iotdb-thrift-async-connector', 'connector.node-urls'='127.0.0.1:{c}', 'connector.ssl.enable'='true', 'connector.ssl.trust-store-path'='{other}')"));
    sql(&e, &format!("create pipe pwrongca WITH CONNECTOR ('connector'='iotdb-thrift-sync-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{c}', 'connector.ssl.enable'='true', 'connector.ssl.trust-store-path'='{other}')"));
    sql(&e, &format!("create pipe pwronghost WITH CONNECTOR ('connector'='iotdb-thrift-sync-connector', 'connector.ip'='localhost', 'connector.port'='{c}', {ssl})"));
    sql(&e, &format!("create pipe plegacyca WITH CONNECTOR ('connector'='iotdb-legacy-pipe-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{pipe_port}', 'connector.ssl.enable'='true', 'connector.ssl.trust-store-path'='{other}')"));
    for (id, want) in [
        ("pwrongca", "unknown CA"),
        ("pasyncwrongca", "unknown CA"),
        (
            "pwronghost",
            "not valid for the host name localhost (wrong host name; the certificate names 127.0.0.1, cloud.edgepipe.test)",
        ),
        ("plegacyca", "unknown CA"),
    ] {
        sql(&e, &format!("start pipe {id}"));
        let host = if id == "pwronghost" {
            format!("localhost:{c}")
        } else if id == "plegacyca" {
            format!("127.0.0.1:{pipe_port}")
        } else {
            format!("127.0.0.1:{c}")
        };
        let mut last = String::new();
        assert!(
            wait_until(WAIT, || {
                last = exception_of(&e, id);
                last.contains(want) && last.contains(&host)
            }),
            "pipe {id}: ExceptionMessage {last:?} does not name {host} and {want:?}"
        );
    }
    // A plaintext pipe to the TLS port: refused with a reason, no hang.
    sql(&e, &format!("create pipe pplain WITH CONNECTOR ('connector'='iotdb-thrift-sync-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{c}')"));
    sql(&e, "start pipe pplain");
    let mut last = String::new();
    assert!(
        wait_until(WAIT, || {
            last = exception_of(&e, "pplain");
            last.contains(&format!("127.0.0.1:{c}")) && last.contains("if the receiver serves TLS")
        }),
        "pplain: {last:?}"
    );
    // TLS pipes to a node that serves plain TCP: refused with a reason,
    // and not one row goes over plain TCP instead (no fallback).
    let plain = NodeProc::start(&tmp.path().join("plain"), &[]);
    let p = plain.port;
    write_rows(&e, "root.tplain.d", 10);
    for (id, conn) in [
        ("pfallsync", format!("'connector'='iotdb-thrift-sync-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{p}', {ssl}")),
        ("pfallasync", format!("'connector'='iotdb-thrift-async-connector', 'connector.node-urls'='127.0.0.1:{p}', {ssl}")),
    ] {
        sql(&e, &format!("create pipe {id} WITH EXTRACTOR ('extractor.pattern'='root.tplain') WITH CONNECTOR ({conn})"));
        sql(&e, &format!("start pipe {id}"));
        assert!(
            wait_until(WAIT, || {
                last = exception_of(&e, id);
                last.contains(&format!("127.0.0.1:{p}")) && last.contains("does it serve TLS")
            }),
            "{id}: {last:?}"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        count_with(&plain.addr(), None, "root.tplain.d"),
        0,
        "rows reached the plaintext node"
    );
    assert!(
        plain
            .log_text()
            .contains("a TLS handshake on a plaintext port"),
        "{}",
        plain.log_text()
    );
    plain.stop();
    // A trust store that is not there: named.
    sql(&e, &format!("create pipe pnostore WITH CONNECTOR ('connector'='iotdb-thrift-sync-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{c}', 'connector.ssl.enable'='true', 'connector.ssl.trust-store-path'='/nonexistent/ca.pem')"));
    sql(&e, "start pipe pnostore");
    assert!(
        wait_until(WAIT, || {
            last = exception_of(&e, "pnostore");
            last.contains("connector.ssl.trust-store-path: /nonexistent/ca.pem: No such file")
        }),
        "pnostore: {last:?}"
    );
    edge.stop();
    cloud.stop();
}

#[test]
fn stalled_handshakes_are_displaced_at_the_connection_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki(tmp.path());
    // Two connections at most; the timeout far away, so only displacement
    // can free a place.
    let node = tls_node(
        &tmp.path().join("cloud"),
        &pki.node_pem,
        "",
        &[("rpc_max_concurrent_client_num", "2")],
    );
    let addr: std::net::SocketAddr = node.addr().parse().unwrap();
    let mut stalled: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&[0x16, 0x03, 0x01]).unwrap();
            s
        })
        .collect();
    // Both are admitted (and stalled in their handshakes) before the client
    // comes.
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let rows = tls_sql(&node.addr(), &pki.ca, "show pipeserver").unwrap();
    assert_eq!(rows.rows.len(), 1);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "the client waited {:?} for a place",
        start.elapsed()
    );
    assert!(
        stalled
            .iter_mut()
            .any(|s| closed_within(s, Duration::from_secs(5)).is_some()),
        "no stalled handshake was displaced"
    );
    assert!(
        node.log_text()
            .contains("displaced at the connection limit (during the TLS handshake)"),
        "{}",
        node.log_text()
    );
    node.stop();
}
