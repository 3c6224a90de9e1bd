//! Deletions and pipes (issue 8, "Deletions on 1.2 pipes"; DESIGN
//! invariant 12): a pipe never ships a point that the edge had deleted
//! before the pipe read it. IoTDB 1.2's `pipeTransfer` cannot carry a
//! deletion, so a point deleted on the edge before a 1.2 pipe read it
//! must not travel at all, or it reappears on the cloud for good.

use std::time::Duration;

use e2e::{everything, sql, wait_until, NodeProc};

const WAIT: Duration = Duration::from_secs(60);

fn connector(port: u16) -> String {
    format!("WITH CONNECTOR ('connector'='iotdb-thrift-connector', 'connector.ip'='127.0.0.1', 'connector.port'='{port}')")
}

fn rows_of(addr: &str, q: &str) -> Vec<(i64, Vec<Option<String>>)> {
    sql(addr, q)
        .map(|r| {
            r.rows
                .into_iter()
                .map(|(t, v)| (t, v.into_iter().map(|x| x.map(|x| x.to_string())).collect()))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the cloud's `select ** from root` equals the edge's and
/// the pipe has nothing left to send.
fn assert_same(edge: &NodeProc, cloud: &NodeProc, pipe: &str) {
    let mut last = None;
    let same = wait_until(WAIT, || {
        let (e, c) = (everything(&edge.addr()), everything(&cloud.addr()));
        let left = sql(&edge.addr(), &format!("show pipe {pipe}"))
            .expect("rows")
            .rows[0]
            .1[7]
            .as_ref()
            .map(|v| v.to_string());
        let ok = e.is_some() && e == c && left.as_deref() == Some("0");
        last = Some((e, c));
        ok
    });
    let (e, c) = last.expect("polled");
    assert!(same, "cloud differs from edge:\nedge:  {e:?}\ncloud: {c:?}");
}

#[test]
fn a_12_pipe_created_after_deletions_delivers_none_of_the_deleted_points() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = NodeProc::start(&tmp.path().join("cloud"), &[]);
    let edge = NodeProc::start(&tmp.path().join("edge"), &[]);
    let e = edge.addr();
    for s in [
        "create database root.sg1",
        "create database root.sg2",
        "insert into root.sg1.d(time, s, t) values (1, 1, 1), (2, 2, 2), (3, 3, 3), (4, 4, 4)",
        "insert into root.sg1.a(time, x) aligned values (1, 1), (2, 2), (3, 3)",
        "insert into root.sg2.d(time, s) values (1, 1), (2, 2)",
        // One point of one series; a range of an aligned device; a whole
        // database.
        "delete from root.sg1.d.s where time = 2",
        "delete from root.sg1.a.* where time >= 2 and time <= 3",
        "delete database root.sg2",
        // Written again after the deletion: not deleted.
        "insert into root.sg1.a(time, x) aligned values (3, 33)",
    ] {
        sql(&e, s);
    }
    sql(&e, &format!("create pipe p {}", connector(cloud.port)));
    sql(&e, "start pipe p");
    assert_same(&edge, &cloud, "p");
    let c = cloud.addr();
    assert_eq!(
        rows_of(&c, "select s, t from root.sg1.d"),
        vec![
            (1, vec![Some("1.0".into()), Some("1.0".into())]),
            (2, vec![None, Some("2.0".into())]),
            (3, vec![Some("3.0".into()), Some("3.0".into())]),
            (4, vec![Some("4.0".into()), Some("4.0".into())]),
        ]
    );
    assert_eq!(
        rows_of(&c, "select x from root.sg1.a"),
        vec![
            (1, vec![Some("1.0".into())]),
            (3, vec![Some("33.0".into())])
        ]
    );
    assert!(
        rows_of(&c, "select ** from root.sg2").is_empty(),
        "the deleted database reappeared on the cloud"
    );

    // A stopped pipe falls behind; points written and deleted meanwhile
    // do not travel when it catches up, and the deletion index survives a
    // kill -9 of the edge between the delete and the read.
    sql(&e, "stop pipe p");
    sql(
        &e,
        "insert into root.sg1.d(time, s) values (10, 10), (11, 11)",
    );
    sql(&e, "delete from root.sg1.d.s where time = 10");
    let dir = edge.data_dir.clone();
    edge.kill9();
    let edge = NodeProc::start(&dir, &[]);
    let e = edge.addr();
    sql(&e, "start pipe p");
    assert_same(&edge, &cloud, "p");
    assert_eq!(
        rows_of(&c, "select s from root.sg1.d where time >= 10"),
        vec![(11, vec![Some("11.0".into())])]
    );
    edge.stop();
    cloud.stop();
}
