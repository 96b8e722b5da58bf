"""Phone-number recall of sluice-pii on the formats Faker's phone_number() writes for en_US, en_GB,
de_DE and fr_FR (dots, extensions like x123, 00 prefixes, (0114) 496 0313, +44(0)...), in
sentences without a context word, and its precision on hard negatives (ids, dates, times,
order and invoice numbers, versions, prices).

    .venv/bin/python bench/phones.py        (part of make bench)

A finding counts when it covers the whole number (an extension may be left out).
"""
import json
import random
import subprocess
import sys
from pathlib import Path

from faker import Faker

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR"]
TEMPLATES = ["Reach Sam on {v} after five.", "{v}", "Numbers: {v}, then the desk.", "It is {v} (home).",
             "Try {v} or write."]
N = 500


def negatives(rng: random.Random, f: Faker) -> list[str]:
    return [
        f"Order ORD-{rng.randint(2020, 2026)}-{rng.randint(100000, 999999)} shipped.",
        f"Order #{rng.randint(10**6, 10**10)} is ready.",
        f"Ticket {rng.randint(10**9, 10**10 - 1)} was merged.",
        f"Invoice no. {rng.randint(10**9, 10**10 - 1)} is open.",
        f"Customer ID: {rng.randint(10**9, 10**10 - 1)}.",
        f"Logged at {f.date_time().strftime('%Y-%m-%d %H:%M:%S')} by the scheduler.",
        f"Released on {f.date_between('-5y').strftime(rng.choice(['%m/%d/%Y', '%d.%m.%Y', '%Y-%m-%d', '%d/%m/%Y']))}.",
        f"Request id {f.uuid4()} failed.",
        f"Upgrade to version {rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 200)} now.",
        f"The price is ${rng.randint(1, 9999)},{rng.randint(100, 999)}.{rng.randint(10, 99)} incl. tax.",
        f"Invoice {rng.randint(10**9, 10**13)} is due.",
        f"Account {rng.randint(10**7, 10**9)} was closed at {rng.randint(10, 23)}:{rng.randint(10, 59)}.",
        f"Batch {rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}-{rng.randint(1, 9)} was rejected.",
        f"Between {rng.randint(1000, 4999)} and {rng.randint(5000, 9999)} units.",
        f"Coordinates {rng.uniform(-90, 90):.6f}, {rng.uniform(-180, 180):.6f} logged.",
        f"Build {rng.randint(2020, 2026)}{rng.randint(10, 12)}{rng.randint(10, 28)}.{rng.randint(1, 9)} passed.",
    ]


def scan(texts):
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "sluice-core", "--example", "pii_scan"], check=True,
                   cwd=ROOT)
    out = subprocess.run([str(ROOT / "target/release/examples/pii_scan")], input="\n".join(json.dumps(t) for t in texts),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    return [[tuple(s) for s in json.loads(line)] for line in out]


def main():
    rng = random.Random(11)
    items = []
    for loc in LOCALES:
        f = Faker(loc)
        f.seed_instance(1234)
        for i in range(N):
            v = f.phone_number()
            pre, post = rng.choice(TEMPLATES).split("{v}")
            items.append((loc, pre + v + post, len(pre), len(pre) + len(v), v))
    negs = []
    for loc in LOCALES:
        f = Faker(loc)
        f.seed_instance(99)
        for _ in range(60):
            negs += negatives(rng, f)
    found = scan([t for _, t, *_ in items] + negs)
    print(f"phone numbers (Faker phone_number(), {N} per locale, no context word)")
    print(f"{'locale':8}{'recall':>8}   missed (examples)")
    total_hit = 0
    for loc in LOCALES:
        rows = [(it, fs) for it, fs in zip(items, found) if it[0] == loc]
        missed = []
        for (_, text, s, e, v), fs in rows:
            # The whole number, up to an extension, is covered.
            core_end = s + len(v.split("x")[0])
            if any(k == "PHONE_NUMBER" and a <= s and b >= core_end for k, a, b in fs):
                total_hit += 1
            else:
                missed.append(v)
        print(f"{loc:8}{(len(rows) - len(missed)) / len(rows):8.3f}   {missed[:6]}")
    neg_found = found[len(items):]
    fp = [t for t, fs in zip(negs, neg_found) if any(k == "PHONE_NUMBER" for k, *_ in fs)]
    print(f"all     {total_hit / len(items):8.3f}")
    print(f"hard negatives without a phone finding: {1 - len(fp) / len(negs):.3f} of {len(negs)}  {fp[:5]}")


if __name__ == "__main__":
    sys.exit(main())
