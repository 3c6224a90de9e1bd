"""Writes TsFiles with the PyPI `tsfile` package (Apache TsFile 2.x, format
version 4) for tests/tests/tsfile.rs, and a JSON file of exactly what was
written, so the Rust reader can be compared value for value.

usage: write_tsfiles.py OUT_DIR [--rows N]

Files:
  tree.tsfile      tree model (non-aligned): one device per compression
                   (UNCOMPRESSED, SNAPPY, GZIP, LZ4, ZSTD, LZMA2), each with
                   every (type, encoding) the writer supports for the types
                   IoTDB 1.2 has; rows over several pages; nulls as missing
                   rows; a device path of 5 nodes (v4 splits it in segments).
  table_<C>.tsfile table model (aligned) with default compression C: three
                   devices (tag values), a FIELD of every type with nulls.
  v4types.tsfile   TIMESTAMP, DATE, BLOB, STRING (TsFile 2.x types).
  lzo.tsfile, sprintz.tsfile: things the reader must refuse by name.
  expected.json    {"files": {name: {"kind", "series": {"device|measurement":
                   [[time, value or null], ...]}}}}
"""

import json
import math
import os
import sys

from tsfile import (
    ColumnCategory,
    ColumnSchema,
    Compressor,
    Field,
    RowRecord,
    TableSchema,
    Tablet,
    TimeseriesSchema,
    TSDataType,
    TSEncoding,
    TsFileTableWriter,
    TsFileWriter,
    get_tsfile_config,
    set_tsfile_config,
)

T = TSDataType
E = TSEncoding
CODECS = [
    Compressor.UNCOMPRESSED,
    Compressor.SNAPPY,
    Compressor.GZIP,
    Compressor.LZ4,
    Compressor.ZSTD,
    Compressor.LZMA2,
]
# (type, encoding) pairs the PyPI writer accepts, for the types of IoTDB 1.2.
PAIRS = [
    (T.BOOLEAN, E.PLAIN),
    (T.INT32, E.PLAIN), (T.INT32, E.RLE), (T.INT32, E.TS_2DIFF), (T.INT32, E.GORILLA),
    (T.INT64, E.PLAIN), (T.INT64, E.RLE), (T.INT64, E.TS_2DIFF), (T.INT64, E.GORILLA),
    (T.FLOAT, E.PLAIN), (T.FLOAT, E.TS_2DIFF), (T.FLOAT, E.GORILLA),
    (T.DOUBLE, E.PLAIN), (T.DOUBLE, E.TS_2DIFF), (T.DOUBLE, E.GORILLA),
    (T.TEXT, E.PLAIN), (T.TEXT, E.DICTIONARY),
]


def value(t, r, k):
    """Row r of series k: None (null) or a value of type t."""
    if (r * 7 + k * 3) % 11 == 0:
        return None
    if t == T.BOOLEAN:
        return (r + k) % 3 == 0
    if t == T.INT32:
        return (r * r * (k + 1)) % 100003 - 50000 if r % 50 else 7
    if t == T.INT64:
        return (r * 1_000_003 + k) * (-1 if r % 3 else 1) + (1 << 40)
    if t == T.FLOAT:
        # Two decimals: exact for TS_2DIFF's float precision of 2.
        return round((r % 200) * 0.25 - 10.5 + k, 2)
    if t == T.DOUBLE:
        return round(r * 1.5 - 300.25 + k, 2)
    return "v%d-%s" % (r % 37, "ü" * (r % 3))


def record(t, v):
    if t == T.FLOAT:
        # What a FLOAT holds: the nearest f32, as JSON's double.
        import struct
        return struct.unpack(">f", struct.pack(">f", v))[0]
    return v


def set_config(**kw):
    c = get_tsfile_config()
    c.update(kw)
    set_tsfile_config(c)


def tree(out, rows, expected):
    path = os.path.join(out, "tree.tsfile")
    w = TsFileWriter(path)
    series = {}
    devices = []
    for ci, codec in enumerate(CODECS):
        dev = "root.sg.c%d_%s" % (ci, codec.name.lower()) if ci else "root.sg.a.b.plain"
        devices.append(dev)
        for k, (t, e) in enumerate(PAIRS):
            name = "s%d_%s_%s" % (k, t.name.lower(), e.name.lower())
            w.register_timeseries(dev, TimeseriesSchema(name, t, e, codec))
            series[(dev, name)] = (t, k)
    for r in range(rows):
        ts = 1_700_000_000_000 + r * 1000
        for dev in devices:
            fields = []
            for (d, name), (t, k) in series.items():
                if d != dev:
                    continue
                v = value(t, r, k)
                if v is None:
                    continue
                fields.append(Field(name, v, t))
                expected.setdefault("%s|%s" % (dev, name), []).append([ts, record(t, v)])
            w.write_row_record(RowRecord(dev, ts, fields))
    w.close()


TABLE_TYPES = [T.BOOLEAN, T.INT32, T.INT64, T.FLOAT, T.DOUBLE, T.TEXT]


def table(out, rows, codec, expected):
    name = "table_%s.tsfile" % codec.name.lower()
    path = os.path.join(out, name)
    cols = [ColumnSchema("region", T.STRING, ColumnCategory.TAG)]
    cols += [ColumnSchema("f_%s" % t.name.lower(), t, ColumnCategory.FIELD) for t in TABLE_TYPES]
    w = TsFileTableWriter(path, TableSchema("plant", cols))
    for di, region in enumerate(["north", "south", "east"]):
        tab = Tablet([c.column_name for c in cols], [c.data_type for c in cols], rows)
        tab.set_table_name("plant")
        for r in range(rows):
            ts = 1000 + r * 10
            tab.add_timestamp(r, ts)
            tab.add_value_by_name("region", r, region)
            for k, t in enumerate(TABLE_TYPES):
                v = value(t, r, k + di)
                key = "plant.%s|f_%s" % (region, t.name.lower())
                if v is not None:
                    tab.add_value_by_name("f_%s" % t.name.lower(), r, v)
                expected.setdefault(key, []).append([ts, None if v is None else record(t, v)])
        w.write_table(tab)
    w.close()
    return name


def v4_types(out, rows, expected):
    """The types TsFile 2.x added (not in IoTDB 1.2): TIMESTAMP, DATE, BLOB,
    STRING; the reader gives them as INT64, INT32 (yyyymmdd), TEXT, TEXT."""
    import datetime

    w = TsFileWriter(os.path.join(out, "v4types.tsfile"))
    dev = "root.sg.v4"
    for name, t in [("ts", T.TIMESTAMP), ("dt", T.DATE), ("bl", T.BLOB), ("st", T.STRING)]:
        w.register_timeseries(dev, TimeseriesSchema(name, t, E.PLAIN, Compressor.LZ4))
    for r in range(rows):
        day = datetime.date(2024, 1, 1) + datetime.timedelta(days=r)
        vals = [("ts", 1_700_000_000_000 + r, T.TIMESTAMP), ("dt", day, T.DATE),
                ("bl", b"b%d" % r, T.BLOB), ("st", "s%d" % r, T.STRING)]
        fields = [Field(n, v, t) for n, v, t in vals if (r + len(n)) % 7]
        w.write_row_record(RowRecord(dev, r, fields))
        for n, v, t in vals:
            if (r + len(n)) % 7:
                if t == T.DATE:
                    v = v.year * 10000 + v.month * 100 + v.day
                elif t == T.BLOB:
                    v = v.decode()
                expected.setdefault("%s|%s" % (dev, n), []).append([r, v])
    w.close()


def refused(out):
    """Files whose compression or encoding the reader must name."""
    w = TsFileWriter(os.path.join(out, "lzo.tsfile"))
    w.register_timeseries("root.sg.d", TimeseriesSchema("s", T.INT64, E.PLAIN, Compressor.LZO))
    for r in range(5):
        w.write_row_record(RowRecord("root.sg.d", r, [Field("s", r, T.INT64)]))
    w.close()
    w = TsFileWriter(os.path.join(out, "sprintz.tsfile"))
    w.register_timeseries("root.sg.d", TimeseriesSchema("s", T.INT32, E.SPRINTZ, Compressor.UNCOMPRESSED))
    for r in range(5):
        w.write_row_record(RowRecord("root.sg.d", r, [Field("s", r, T.INT32)]))
    w.close()


def main():
    out = sys.argv[1]
    rows = int(sys.argv[sys.argv.index("--rows") + 1]) if "--rows" in sys.argv else 1000
    os.makedirs(out, exist_ok=True)
    # The library's settings are filled in when the first writer starts.
    init = os.path.join(out, "init.tsfile")
    TsFileWriter(init).close()
    os.remove(init)
    # Small pages, so that every series spans several.
    set_config(page_writer_max_point_num_=100)
    files = {}
    exp = {}
    tree(out, rows, exp)
    files["tree.tsfile"] = {"kind": "tree", "series": exp}
    for i, codec in enumerate(CODECS):
        exp = {}
        # Vary the table model's encodings with the file (its columns take
        # the configured defaults).
        if i % 2:
            set_config(default_compression_type_=codec, int32_encoding_type_=E.RLE,
                       int64_encoding_type_=E.GORILLA, float_encoding_type_=E.TS_2DIFF,
                       double_encoding_type_=E.PLAIN, string_encoding_type_=E.DICTIONARY,
                       time_compress_type_=codec)
        else:
            set_config(default_compression_type_=codec, int32_encoding_type_=E.TS_2DIFF,
                       int64_encoding_type_=E.TS_2DIFF, float_encoding_type_=E.GORILLA,
                       double_encoding_type_=E.GORILLA, string_encoding_type_=E.PLAIN,
                       time_compress_type_=codec)
        name = table(out, rows, codec, exp)
        files[name] = {"kind": "table", "series": exp}
    exp = {}
    v4_types(out, rows, exp)
    files["v4types.tsfile"] = {"kind": "tree", "series": exp}
    refused(out)
    for f in files.values():
        for rows_ in f["series"].values():
            for row in rows_:
                if isinstance(row[1], float) and not math.isfinite(row[1]):
                    raise SystemExit("non-finite value in the expected data")
    with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as fh:
        json.dump({"files": files}, fh)


if __name__ == "__main__":
    main()
