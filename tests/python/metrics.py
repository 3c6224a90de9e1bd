"""Scrapes an edgepipe node's metrics endpoint and parses what it serves
with the Prometheus project's own Python parsers (the `prometheus_client`
package): the Prometheus text format 0.0.4 that a plain scrape gets, and
OpenMetrics when the scraper asks for it, as Prometheus does.

Run by the Rust end-to-end test tests/tests/metrics.rs:

    python metrics.py URL    # e.g. http://127.0.0.1:9091/metrics

Prints one JSON object on stdout:

    {"families": {NAME: TYPE, ...},            # from the Prometheus text parser
     "samples": [[NAME, {LABEL: VALUE}, VALUE], ...],
     "openmetrics": {NAME: TYPE, ...},          # the same scrape as OpenMetrics
     "content_types": [PLAIN, OPENMETRICS]}

Exits 1 with FAIL: ... when a scrape fails or a parser refuses what it got
(the parsers raise on malformed exposition).
"""
import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

OPENMETRICS = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def scrape(url, accept=None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        if r.status != 200:
            fail(f"{url}: HTTP {r.status}")
        return r.headers.get("Content-Type", ""), r.read().decode("utf-8")


def main():
    if len(sys.argv) != 2:
        fail("usage: metrics.py URL")
    url = sys.argv[1]
    plain_type, plain = scrape(url)
    om_type, om = scrape(url, OPENMETRICS)
    try:
        families = list(text_string_to_metric_families(plain))
    except Exception as e:  # the parser's errors are plain exceptions
        fail(f"the Prometheus text parser refused the scrape: {e!r}\n{plain}")
    try:
        om_families = list(openmetrics_families(om))
    except Exception as e:
        fail(f"the OpenMetrics parser refused the scrape: {e!r}\n{om}")
    if not om.endswith("# EOF\n"):
        fail("an OpenMetrics exposition ends with # EOF")
    out = {
        "families": {f.name: f.type for f in families},
        "samples": [[s.name, s.labels, s.value] for f in families for s in f.samples],
        "openmetrics": {f.name: f.type for f in om_families},
        "content_types": [plain_type, om_type],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
