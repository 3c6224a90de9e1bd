"""Writes to a node with the official IoTDB Python client (for the pipe
end-to-end tests):

    python writer.py seed PORT                  # the seed's example script
    python writer.py stream PORT DEVICE FROM N  # N rows (3 columns) as 100-row tablets
"""
import sys
import time

from iotdb.Session import Session
from iotdb.utils.IoTDBConstants import TSDataType
from iotdb.utils.Tablet import Tablet

SEED = [
    "SET STORAGE GROUP TO root.vehicle",
    "CREATE TIMESERIES root.vehicle.d0.s0 WITH DATATYPE=INT32, ENCODING=RLE",
    "CREATE TIMESERIES root.vehicle.d0.s1 WITH DATATYPE=TEXT, ENCODING=PLAIN",
    "CREATE TIMESERIES root.vehicle.d1.s2 WITH DATATYPE=FLOAT, ENCODING=RLE",
    "CREATE TIMESERIES root.vehicle.d1.s3 WITH DATATYPE=BOOLEAN, ENCODING=PLAIN",
    "insert into root.vehicle.d0(timestamp,s0) values(now(),10)",
    "insert into root.vehicle.d0(timestamp,s0,s1) values(now(),12,'12')",
    "insert into root.vehicle.d0(timestamp,s1) values(now(),'14')",
    "insert into root.vehicle.d1(timestamp,s2) values(now(),16.0)",
    "insert into root.vehicle.d1(timestamp,s2,s3) values(now(),18.0,true)",
    "insert into root.vehicle.d1(timestamp,s3) values(now(),false)",
    "flush",
]

mode, port = sys.argv[1], int(sys.argv[2])
s = Session("127.0.0.1", port, "root", "root")
s.open(False)
if mode == "seed":
    for sql in SEED:
        s.execute_non_query_statement(sql)
        time.sleep(0.003)  # now() is in ms: keep the rows apart
elif mode == "stream":
    device, start, n = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    names = ["a", "b", "c"]
    types = [TSDataType.INT64, TSDataType.DOUBLE, TSDataType.TEXT]
    for base in range(start, start + n, 100):
        ts = list(range(base, min(base + 100, start + n)))
        values = [[t, t / 2, f"v{t}"] for t in ts]
        s.insert_tablet(Tablet(device, names, types, values, ts))
else:
    raise SystemExit(f"unknown mode {mode}")
s.close()
print("ok")
