"""The official IoTDB Python client against an edgepipe node serving TLS
(enable_thrift_ssl=true), run by tests/tests/tls.rs:

    python tls.py seed PORT CA      # over TLS, verifying against CA: the seed's
                                    # example script, then its query; prints ok
    python tls.py refused PORT CA   # over TLS with a CA that did not sign the
                                    # node's certificate: prints the error
    python tls.py plain PORT        # without TLS: prints the error

Exits non-zero with a message on any mismatch.
"""
import io
import logging
import sys
import time

from iotdb.Session import Session

from interop import SEED  # the seed's verification script (seed 000, section 7)


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


mode, port = sys.argv[1], int(sys.argv[2])
if mode == "seed":
    s = Session("127.0.0.1", port, "root", "root", use_ssl=True, ca_certs=sys.argv[3])
    s.open(False)
    for sql in SEED:
        s.execute_non_query_statement(sql)
        time.sleep(0.003)  # now() is in ms: keep the rows apart
    with s.execute_query_statement("select ** from root.vehicle") as ds:
        names = ds.get_column_names()
        rows = []
        while ds.has_next():
            r = ds.next()
            rows.append([f.get_string_value() for f in r.get_fields()])
    s.close()
    want_names = ["Time", "root.vehicle.d0.s0", "root.vehicle.d0.s1",
                  "root.vehicle.d1.s2", "root.vehicle.d1.s3"]
    if names != want_names:
        fail(f"column names {names} != {want_names}")
    want = [["10", "None", "None", "None"], ["12", "12", "None", "None"],
            ["None", "14", "None", "None"], ["None", "None", "16.0", "None"],
            ["None", "None", "18.0", "True"], ["None", "None", "None", "False"]]
    if rows != want:
        fail(f"rows {rows} != {want}")
    print("ok")
elif mode in ("refused", "plain"):
    if mode == "refused":
        s = Session("127.0.0.1", port, "root", "root", use_ssl=True, ca_certs=sys.argv[3],
                    connection_timeout_in_ms=20000)
    else:
        s = Session("127.0.0.1", port, "root", "root", connection_timeout_in_ms=20000)
    # The client's own exception only says it could not connect; thrift
    # logs the cause (the TLS error) at INFO: keep it.
    log = io.StringIO()
    logging.getLogger("thrift").addHandler(logging.StreamHandler(log))
    logging.getLogger("thrift").setLevel(logging.INFO)
    start = time.monotonic()
    try:
        s.open(False)
    except Exception as e:  # the client wraps transport errors in its own
        print(f"refused after {time.monotonic() - start:.1f}s: {e!r}\n{log.getvalue()}")
        sys.exit(0)
    fail("the session opened")
else:
    fail(f"unknown mode {mode}")
