//! The SQL an IoTDB user checks sync with (issue 10), through the official
//! Python client against a real `edgepipe server`: aggregations, GROUP BY
//! time windows, SELECT LAST and ALIGN BY DEVICE on the seed's example
//! data (IoTDB 1.2's results) and on a series of 1.2 million points
//! (results computed by the script from the points it wrote), with the
//! column names and types the client reports.

use std::time::Duration;

use e2e::{run_python, NodeProc};

#[test]
fn aggregations_through_the_python_client() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("node"), &[]);
    let out = run_python(
        "aggregation.py",
        &[&node.port.to_string()],
        Duration::from_secs(300),
    );
    assert_eq!(out.trim(), "ok");
    node.stop();
}
