#!/usr/bin/env python3
"""check_readers.py -- run the README's "Reading the tables" snippets on a table with deletion vectors.

  1. Builds a Delta table with the real hvrlake binary ($HVRLAKE_BIN, default
     ${CARGO_TARGET_DIR:-~/.cache/hvrlake/target}/debug/hvrlake), called as HVR calls it: a
     refresh, then three integrate cycles of updates, deletes and inserts, with
     `deletion_vectors=true`. A plain dict {id: (id, name, amount)} models the rows it should hold.
  2. Checks in _delta_log/*.json that live files of the table carry deletion vectors, and that
     their stored rows minus the deleted ones are the model's rows (else there is nothing to test).
  3. Runs every ```python block of the README section "## Reading the tables", each in its own
     interpreter (this one's), with TABLE set to the table's directory, and compares the `rows`
     it leaves (a list of (id, name, amount) tuples) with the model.
Prints one line per snippet and `check_readers: N passed, N failed`; exits 1 on any failure.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE_NAME, COLS, EXTRA = "items", ["id", "name", "amount"], ["hvr_op", "hvr_integ_seq", "is_deleted"]
USERARG = ("deletion_vectors=true rewrite_share=1 compact_deleted_share=0 "  # keep the vectors
           "type.items.id=int64 type.items.amount=decimal(12,2)")

# The changes: (hvr_op, id, name, amount); op 1 upserts, op 0 deletes (with is_deleted=1).
REFRESH = [(1, i, f"item {i}", f"{i}.{i % 100:02d}") for i in range(1, 41)] + [
    (1, 41, "Smith, Jones & \"Co\"", "7.05"), (1, 42, None, "0.00")]
CYCLES = [
    [(1, 2, "item 2 renamed", "2.02"), (1, 3, "item 3", "33.30"), (0, 5, None, None),
     (1, 43, "new 43", "43.00"), (0, 99, None, None), (1, 43, "new 43, again", "43.43")],
    [(0, 2, None, None), (1, 4, "item 4 first", "4.40"), (1, 4, "item 4 second", "4.44"),
     (1, 5, "item 5 is back", "5.55"), (1, 6, None, "6.06"), (1, 42, "no longer null", None)],
    [(0, 7, None, None), (0, 8, None, None), (1, 9, "Müller – 東京", "-9.99"),
     (1, 44, "new 44", "1234567890.12"), (0, 43, None, None), (0, 40, None, None)],
]


def apply(model, changes):
    for op, key, name, amount in changes:
        if op == 0:
            model.pop(key, None)
        else:
            model[key] = (key, name, None if amount is None else Decimal(amount))


def csv_field(v):
    """NULL is an empty unquoted field; text is quoted when it needs it, quotes doubled."""
    if v is None:
        return ""
    v = str(v)
    return '"' + v.replace('"', '""') + '"' if any(c in v for c in ',"\n') or v == "" else v


def call(binary, mode, loc, lake, files):
    env = dict(os.environ, HVR_TBL_NAMES=TABLE_NAME, HVR_BASE_NAMES=TABLE_NAME,
               HVR_TBL_KEYS="id", HVR_TBL_KEYS_BASE="id",
               HVR_COL_NAMES=",".join(COLS + EXTRA), HVR_COL_NAMES_BASE=",".join(COLS + EXTRA),
               HVR_FILE_LOC=str(loc), HVR_FILE_NAMES=":".join(files))
    p = subprocess.run([binary, mode, "shop", "lake", f"target={lake} {USERARG}"], cwd=loc,
                       env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"check_readers: hvrlake {mode} failed (exit {p.returncode}):\n{p.stderr}")


def build_table(binary, work):
    """Refresh + cycles through the binary; returns (table dir, model)."""
    lake, model = work / "lake", {}
    for step, changes in enumerate([REFRESH] + CYCLES):
        loc = work / f"loc-{step}"
        loc.mkdir()
        name = f"2026112215{step:02d}00000-{TABLE_NAME}.csv"
        lines = [",".join(COLS + EXTRA)]
        for i, (op, key, nm, amount) in enumerate(changes, 1):
            seq = f"{i:x}" if step == 0 else f"{step:010X}|{i:04X}"   # refresh: a hex counter
            lines.append(",".join(csv_field(v) for v in (key, nm, amount, op, seq, 1 - op)))
        (loc / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        modes = ["refr_write_begin", "refr_write_end"] if step == 0 else ["integ_begin", "integ_end"]
        for mode in modes:
            call(binary, mode, loc, lake, [name] if mode.endswith("_end") else [])
        if step == 0:
            model.clear()
        apply(model, changes)
    return lake / TABLE_NAME, model


def deletion_vectors(table):
    """Replay the JSON log: (live files, files with a vector, stored rows, deleted rows)."""
    live = {}
    for f in sorted((table / "_delta_log").glob("*.json")):
        for line in f.read_text(encoding="utf-8").splitlines():
            action = json.loads(line) if line.strip() else {}
            if "remove" in action:
                live.pop(action["remove"]["path"], None)
            if "add" in action:
                live[action["add"]["path"]] = action["add"]
    dvs = [a["deletionVector"] for a in live.values() if a.get("deletionVector")]
    stored = sum(json.loads(a["stats"])["numRecords"] for a in live.values())
    return len(live), len(dvs), stored, sum(dv["cardinality"] for dv in dvs)


def snippets(readme):
    """The ```python blocks of the section "## Reading the tables", as (title, code)."""
    text = readme.read_text(encoding="utf-8")
    m = re.search(r"^## Reading the tables\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not m:
        sys.exit(f"check_readers: no section '## Reading the tables' in {readme}")
    blocks = re.findall(r"^```python\n(.*?)^```", m.group(1), re.M | re.S)
    return [(b.splitlines()[0].lstrip("# ").strip() if b.startswith("#") else f"snippet {i}", b)
            for i, b in enumerate(blocks, 1)]


# Runs one snippet: TABLE from argv[1]; its `rows` go to the file argv[2] as text (None kept).
RUNNER = """
import json, os, sys
TABLE = sys.argv[1]
exec(compile(sys.stdin.read(), "README snippet", "exec"))
rows = [[None if v is None else str(v) for v in r] for r in rows]
with open(sys.argv[2], "w") as f: json.dump(rows, f)
sys.stdout.flush(); os._exit(0)   # native threads of some readers can abort the teardown
"""


def run_snippet(code, table, out):
    p = subprocess.run([sys.executable, "-c", RUNNER, str(table), str(out)], input=code,
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0 or not out.exists():
        return None, (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
    return json.loads(out.read_text()), None


def normalize(row):
    """(id, name, amount) as text -> (int, str or None, Decimal or None); 12.5 == 12.50."""
    if len(row) != 3:
        raise ValueError(f"a row has {len(row)} values, not (id, name, amount): {row}")
    i, name, amount = row
    return int(i), name, None if amount is None else Decimal(amount)


def compare(want, got_rows):
    got = {}
    diffs = []
    for r in map(normalize, got_rows):
        if r[0] in got:
            diffs.append(f"duplicate id {r[0]}")
        got[r[0]] = r
    diffs += [f"missing {want[k]}" for k in sorted(want.keys() - got.keys())]
    diffs += [f"extra {got[k]}" for k in sorted(got.keys() - want.keys())]
    diffs += [f"expected {want[k]}, got {got[k]}" for k in sorted(want.keys() & got.keys())
              if want[k] != got[k]]
    return diffs


def main():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/hvrlake/target"))
    binary = os.environ.get("HVRLAKE_BIN", f"{target}/debug/hvrlake")
    blocks = snippets(ROOT / "README.md")
    with tempfile.TemporaryDirectory(prefix="hvrlake-readers.") as tmp:
        table, want = build_table(binary, Path(tmp))
        files, with_dv, stored, deleted = deletion_vectors(table)
        print(f"table {table.name}: {files} files, {with_dv} with deletion vectors, "
              f"{stored} stored rows, {deleted} deleted, model {len(want)} rows")
        failed = 0
        if with_dv == 0 or stored - deleted != len(want):
            print("FAIL the table must hold deletion vectors and stored - deleted = the model's rows")
            failed += 1
        for i, (title, code) in enumerate(blocks):
            got, err = run_snippet(code, table, Path(tmp) / f"rows-{i}.json")
            try:
                diffs = [f"error: {err}"] if err else compare(want, got)
            except (ValueError, TypeError) as e:
                diffs = [f"rows: {e}"]
            failed += bool(diffs)
            print(f"{'FAIL' if diffs else 'ok  '} {title}" + (f": {len(got)} rows" if not diffs else ""))
            for d in diffs[:20]:
                print("     " + d)
    if len(blocks) < 3:
        print(f"FAIL only {len(blocks)} snippets in the README section (deltalake, DuckDB, chDB at least)")
        failed += 1
    passed = len(blocks) + 1 - failed
    print(f"check_readers: {max(passed, 0)} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
