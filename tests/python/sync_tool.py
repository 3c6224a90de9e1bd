"""Runs statements of the 1.0/1.1 sync tool's document (seed 000) through
the official IoTDB Python client, for tests/tests/sync_tool.rs.

    python sync_tool.py PORT STATEMENT [STATEMENT ...]

Prints one JSON object per statement, in order:
    {"sql": ..., "columns": [...], "rows": [[time, v, ...], ...]}  a query
    {"sql": ..., "ok": true}                                        done
    {"sql": ..., "error": "411: Pipe p is RUNNING, ..."}            refused
A statement starting with SELECT or SHOW is run as a query. Refusals do not
stop the run; the exit status is 0 unless the client cannot connect.
"""
import json
import sys

from iotdb.Session import Session


def value(f):
    if f.get_data_type() is None:
        return None
    v = f.get_object_value(f.get_data_type())
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, float):
        v = round(v, 4)
    return v


def main():
    port = int(sys.argv[1])
    s = Session("127.0.0.1", port, "root", "root", fetch_size=5000)
    s.open(False)
    for sql in sys.argv[2:]:
        out = {"sql": sql}
        try:
            if sql.strip().split()[0].lower() in ("select", "show"):
                with s.execute_query_statement(sql) as ds:
                    out["columns"] = ds.get_column_names()
                    rows = []
                    while ds.has_next():
                        r = ds.next()
                        rows.append([r.get_timestamp()] + [value(f) for f in r.get_fields()])
                    out["rows"] = rows
            else:
                s.execute_non_query_statement(sql)
                out["ok"] = True
        except Exception as e:  # the client raises on a refusal
            out["error"] = str(e)
        print(json.dumps(out), flush=True)
    s.close()


if __name__ == "__main__":
    main()
