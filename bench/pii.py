"""PII detection quality and cost.

    .venv/bin/python bench/pii.py

1. Precision and recall per entity type on a labelled corpus made here with Faker (several
   locales) with hard negatives (order numbers, timestamps, UUIDs, versions, prices, tracking
   numbers, near-miss card and SSN digits), for sluice-pii and, side by side, Presidio's pattern
   recognizers (regex only, Presidio's default threshold 0) where Presidio has one.
2. Scan throughput in MB/s: native, and inside wasm (the same code compiled to wasm32-wasip1,
   run by Wasmtime).
3. The first-token latency a PII filter adds to a stream, through Envoy, with and without
   sluice-pii, side by side.
"""
import json
import logging
import random
import statistics
import subprocess
import sys
import tempfile
import time
import http.client
from pathlib import Path

from faker import Faker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import sluice  # noqa: E402

random.seed(7)
# Presidio's e-mail validator asks the network for the public suffix list, then falls back to its
# bundled copy; this machine has no network, so its failure log is noise.
logging.getLogger("tldextract").setLevel(logging.CRITICAL)
LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "nl_NL", "es_ES"]
fakers = [Faker(l) for l in LOCALES]
for i, f in enumerate(fakers):
    f.seed_instance(100 + i)

TEMPLATES = {
    "EMAIL": ["Please reply to {v} by Friday.", "Contact: {v}", "cc {v}, thanks"],
    "PHONE_NUMBER": ["Call me at {v} tomorrow.", "Phone: {v}", "my number is {v}"],
    "US_SSN": ["SSN {v} on file.", "Social security number: {v}"],
    "CREDIT_CARD": ["Charge card {v} please.", "Card number {v}, exp 09/27"],
    "IBAN": ["Wire it to {v} today.", "IBAN: {v}"],
    "IP_ADDRESS": ["The server at {v} is down.", "ssh into {v} and restart"],
    "MAC_ADDRESS": ["Device MAC {v} joined the network."],
    "PERSON": ["Please ask Dr. {v} to review.", "Hi, my name is {v} and I need help.", "Meeting with Mr. {v} at noon."],
    "DATE_OF_BIRTH": ["She was born on {v} in a small town.", "Date of birth: {v}"],
    "AWS_ACCESS_KEY": ["export AWS_ACCESS_KEY_ID={v}"],
    "JWT": ["Authorization header carries {v} now."],
}


def value(kind, f):
    if kind == "EMAIL":
        return f.email()
    if kind == "PHONE_NUMBER":
        return random.choice([fakers[0].phone_number() if random.random() < 0.3 else None,
                              f"+{random.choice(['1', '44', '49', '33', '39'])} {random.randint(200, 999)} {random.randint(100, 999)} {random.randint(1000, 9999)}",
                              f"({random.randint(200, 999)}) {random.randint(200, 999)}-{random.randint(1000, 9999)}"]) \
            or f"+1 {random.randint(200, 999)} {random.randint(200, 999)} {random.randint(1000, 9999)}"
    if kind == "US_SSN":
        return fakers[0].ssn()
    if kind == "CREDIT_CARD":
        n = f.credit_card_number(card_type=random.choice(["visa16", "mastercard", "amex", "discover", "jcb16", "diners", "maestro"]))
        if random.random() < 0.4 and len(n) == 16:
            sep = random.choice([" ", "-"])
            n = sep.join(n[i:i + 4] for i in range(0, 16, 4))
        return n
    if kind == "IBAN":
        v = f.iban()
        return " ".join(v[i:i + 4] for i in range(0, len(v), 4)) if random.random() < 0.4 else v
    if kind == "IP_ADDRESS":
        return random.choice([f.ipv4_private(), f.ipv4_public(), f.ipv6()])
    if kind == "MAC_ADDRESS":
        return f.mac_address()
    if kind == "PERSON":
        return f"{f.first_name()} {f.last_name()}".replace("'", "")
    if kind == "DATE_OF_BIRTH":
        d = f.date_of_birth()
        return random.choice([d.strftime("%m/%d/%Y"), d.strftime("%Y-%m-%d"), d.strftime("%d.%m.%Y"), d.strftime("%B %d, %Y")])
    if kind == "AWS_ACCESS_KEY":
        return "AKIA" + "".join(random.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
    if kind == "JWT":
        return "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI" + "".join(random.choice("abcdefghijk0123456789") for _ in range(20)) + ".sig" + "".join(random.choice("ABCDEFxyz_-") for _ in range(30))
    raise ValueError(kind)


def negatives(f):
    """Texts with no PII that look like PII to a careless pattern."""
    return [
        f"Order ORD-{random.randint(2020, 2026)}-{random.randint(100000, 999999)} shipped.",
        f"Logged at {f.date_time().strftime('%Y-%m-%d %H:%M:%S')} by the scheduler.",
        f"Request id {f.uuid4()} failed.",
        f"Upgrade to version {random.randint(1, 9)}.{random.randint(0, 30)}.{random.randint(0, 200)} now.",
        f"The price is ${random.randint(1, 9999)},{random.randint(100, 999)}.{random.randint(10, 99)} incl. tax.",
        f"Tracking number 1Z{random.randint(100, 999)}AA{random.randint(10**9, 10**10 - 1)} is in transit.",
        f"Invoice {random.randint(10**11, 10**13)} is due.",
        f"Batch {random.randint(100, 999)}-{random.randint(10, 99)}-{random.randint(1000, 9999)}-{random.randint(1, 9)} was rejected.",
        f"Sensor read {random.randint(1, 9)}.{random.randint(256, 999)}.{random.randint(256, 999)}.{random.randint(256, 999)} units.",
        f"Released on {f.date_between('-5y').strftime('%m/%d/%Y')} to all customers.",
        f"See section 4.{random.randint(1, 9)} of the {f.word()} manual, page {random.randint(1, 400)}.",
    ]


def corpus(n_per_template=12):
    items = []
    for kind, templates in TEMPLATES.items():
        for t in templates:
            for _ in range(n_per_template):
                f = random.choice(fakers)
                v = value(kind, f)
                pre, post = t.split("{v}")
                text = pre + v + post
                items.append((text, [(kind, len(pre), len(pre) + len(v))]))
    for _ in range(40):
        for text in negatives(random.choice(fakers)):
            items.append((text, []))
    random.shuffle(items)
    return items


def scan_sluice(texts):
    exe = ROOT / "target/release/examples/pii_scan"
    out = subprocess.run([str(exe)], input="\n".join(json.dumps(t) for t in texts), capture_output=True, text=True,
                         check=True).stdout.splitlines()
    return [[tuple(s) for s in json.loads(line)] for line in out]


PRESIDIO_TYPES = {"EMAIL_ADDRESS": "EMAIL", "CREDIT_CARD": "CREDIT_CARD", "US_SSN": "US_SSN", "IBAN_CODE": "IBAN",
                  "IP_ADDRESS": "IP_ADDRESS"}


def scan_presidio(texts):
    from presidio_analyzer.predefined_recognizers import (CreditCardRecognizer, EmailRecognizer, IbanRecognizer,
                                                          IpRecognizer, UsSsnRecognizer)
    recs = [EmailRecognizer(), CreditCardRecognizer(), UsSsnRecognizer(), IbanRecognizer(), IpRecognizer()]
    out = []
    for t in texts:
        spans = []
        for r in recs:
            for res in r.analyze(t, r.supported_entities, None) or []:
                if res.entity_type in PRESIDIO_TYPES:
                    spans.append((PRESIDIO_TYPES[res.entity_type], res.start, res.end))
        out.append(spans)
    return out


def score(items, predicted, kinds):
    table = {}
    for kind in kinds:
        tp = fp = fn = 0
        for (text, gold), pred in zip(items, predicted):
            g = [s for s in gold if s[0] == kind]
            p = [s for s in pred if s[0] == kind]
            overlap = lambda a, b: a[1] < b[2] and b[1] < a[2]  # noqa: E731
            tp += sum(1 for s in p if any(overlap(s, x) for x in g))
            fp += sum(1 for s in p if not any(overlap(s, x) for x in g))
            fn += sum(1 for x in g if not any(overlap(s, x) for s in p))
        prec = tp / (tp + fp) if tp + fp else 1.0
        rec = (tp / (tp + fn)) if tp + fn else 1.0
        table[kind] = (prec, rec, tp, fp, fn)
    return table


def quality():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "sluice-core", "--example", "pii_scan"], check=True)
    items = corpus()
    texts = [t for t, _ in items]
    ours = score(items, scan_sluice(texts), list(TEMPLATES))
    theirs = score(items, scan_presidio(texts), list(PRESIDIO_TYPES.values()))
    print(f"precision / recall on {len(items)} texts ({sum(len(g) for _, g in items)} entities, "
          f"{sum(1 for _, g in items if not g)} hard negatives), locales {', '.join(LOCALES)}")
    print(f"{'type':16}{'sluice-pii':>18}{'presidio (regex)':>22}")
    tp = fp = 0
    for kind in TEMPLATES:
        p, r, a, b, _ = ours[kind]
        tp, fp = tp + a, fp + b
        other = theirs.get(kind)
        o = f"{other[0]:.3f} / {other[1]:.3f}" if other else "-"
        print(f"{kind:16}{p:10.3f} / {r:.3f}{o:>22}")
    print(f"{'overall':16}{tp / (tp + fp):10.3f} precision")
    return texts


def throughput(texts):
    data = "\n".join(json.dumps(t * 8) for t in texts)
    native = subprocess.run([str(ROOT / "target/release/examples/pii_scan"), "throughput"], input=data,
                            capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "sluice-core", "--example", "pii_scan",
                    "--target", "wasm32-wasip1"], check=True)
    wasm = subprocess.run([sys.executable, str(ROOT / "tests/wasi_runner.py"),
                           str(ROOT / "target/wasm32-wasip1/release/examples/pii_scan.wasm"), "throughput"],
                          input=data, capture_output=True, text=True, check=True).stdout.strip()
    print(f"scan throughput: native {native}; wasm (Wasmtime) {wasm}")


def ttft():
    """Time to the first content byte of a stream, with and without sluice-pii (same request,
    with an e-mail address in it, so the filter redacts and re-hydrates)."""
    m = sluice.free_port()
    base = {"backends": {"o": sluice.mock_backend("openai", m)},
            "models": {"mock-gpt": {"chain": ["o"]}}}
    body = json.dumps({"model": "mock-gpt", "stream": True,
                       "messages": [{"role": "user", "content": "Write to jane@example.com about the order " * 5}]})

    def first_byte(port):
        c = http.client.HTTPConnection("127.0.0.1", port)
        t = time.perf_counter()
        c.request("POST", "/v1/chat/completions", body=body, headers={"content-type": "application/json"})
        r = c.getresponse()
        r.read(1)
        dt = (time.perf_counter() - t) * 1e6
        r.read()
        c.close()
        return dt

    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        with sluice.Stack(Path(d1), mock_port=m, spec=base, quiet=True, max_seconds=300) as plain, \
                sluice.Stack(Path(d2), mock_port=sluice.free_port(), spec={**base, "pii": {}}, quiet=True,
                             max_seconds=300) as pii:
            a, b = [], []
            for i in range(600):
                a.append(first_byte(plain.port))
                b.append(first_byte(pii.port))
    a, b = a[100:], b[100:]
    print(f"time to first byte of a stream, concurrency 1 (µs): without sluice-pii p50 {statistics.median(a):.0f}, "
          f"with {statistics.median(b):.0f}, added {statistics.median(b) - statistics.median(a):.0f}")


if __name__ == "__main__":
    texts = quality()
    throughput(texts)
    ttft()
