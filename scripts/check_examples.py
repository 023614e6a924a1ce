#!/usr/bin/env python3
"""check_examples.py LAKE_DIR EXAMPLES_DIR -- an independent oracle for the example load.

Replays the example CSV files with plain Python (no code shared with hvrlake), computes the
final rows each table should hold, reads the Delta tables hvrlake wrote under LAKE_DIR with
the Python `deltalake` package (`DeltaTable.scan()`, which applies deletion vectors), and
compares them. Prints a diff per table and exits 1 on any mismatch; otherwise prints
`check_examples: N passed, 0 failed`.

Replay rules (HVR semantics, see shared/hvr-contract.md):
  * refresh/  : each table becomes exactly its refresh rows;
  * cycle-*/  : per table, all rows of the cycle's files (file-name order, then row order) are
                stably sorted by hvr_integ_seq compared as a tuple of hex ints; then applied in
                turn: hvr_op 0 or is_deleted=1 deletes the key, hvr_op 1/2 upserts the row.
CSV: header line, `,` separator, `"` quoting (doubled inside), `\n` line ends, NULL = an empty
*unquoted* field (`""` is the empty string). Only data columns are compared (not the extras).
"""
import datetime as dt
import math
import os
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path

OP_COL, SEQ_COL, DEL_COL = "hvr_op", "hvr_integ_seq", "is_deleted"
EXTRA_COLS = {OP_COL, SEQ_COL, DEL_COL}


# ---------------------------------------------------------------- reading the examples

def read_env(path):
    """channel.env: plain NAME=value lines; '#' comments and blank lines are skipped."""
    env = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    return env


def parse_csv(text):
    """Split CSV text into rows of fields; a field is None when empty and unquoted (NULL).

    Written by hand because Python's csv module cannot tell `""` from an empty field.
    """
    rows, row, field, quoted, i, n = [], [], [], False, 0, len(text)
    at_field_start = True
    while i < n:
        c = text[i]
        if quoted:
            if c == '"' and i + 1 < n and text[i + 1] == '"':
                field.append('"'); i += 1          # doubled quote inside a quoted field
            elif c == '"':
                quoted = False                      # closing quote
            else:
                field.append(c)                     # anything, newlines included
        elif c == '"' and at_field_start:
            quoted, at_field_start = True, False
            field.append("")                        # marks the field as quoted: never NULL
        elif c in ",\n":
            row.append("".join(field) if field else None)
            field, at_field_start = [], True
            if c == "\n":
                rows.append(row); row = []
        else:
            field.append(c); at_field_start = False
        i += 1
    if field or row:                                # last line without a final newline
        row.append("".join(field) if field else None)
        rows.append(row)
    return rows


def read_csv(path):
    """Return a list of dicts keyed by lower-case column name."""
    rows = parse_csv(Path(path).read_text(encoding="utf-8"))
    header = [h.lower() for h in rows[0]]
    for r in rows[1:]:
        if len(r) != len(header):
            raise SystemExit(f"{path}: row has {len(r)} fields, header has {len(header)}: {r}")
    return [dict(zip(header, r)) for r in rows[1:]]


def seq_key(seq):
    """hvr_integ_seq `0000...1A2|0003` -> (0x1A2, 3): compared as a tuple of hex numbers."""
    return tuple(int(part, 16) for part in seq.split("|"))


def table_of(file_name):
    """`20261122153000123-order_lines.csv` -> `order_lines` (text after the first `-`)."""
    return file_name.split("-", 1)[1].rsplit(".", 1)[0]


def apply_rows(state, rows, keys, data_cols):
    """Apply change rows (already in order) to state {key tuple: {col: text or None}}."""
    for r in sorted(rows, key=lambda r: seq_key(r[SEQ_COL])):   # stable: ties keep file order
        key = tuple(r[k] for k in keys)
        op = int(r[OP_COL])
        if op == 0 or r.get(DEL_COL) == "1":
            state.pop(key, None)                    # a delete of an absent key is a no-op
        elif op in (1, 2):
            state[key] = {c: r[c] for c in data_cols}
        else:
            raise SystemExit(f"oracle: hvr_op {op} is not used by the examples")


def expected_tables(examples, env):
    """Replay refresh/ then cycle-*/ and return {table: (keys, data_cols, {key: row})}."""
    tables = {}
    for t, keys, cols in zip(env["HVR_TBL_NAMES"].split(":"), env["HVR_TBL_KEYS"].split(":"),
                             env["HVR_COL_NAMES"].split(":")):
        data_cols = [c.lower() for c in cols.split(",") if c.lower() not in EXTRA_COLS]
        tables[t] = ([k.lower() for k in keys.split(",")], data_cols, {})
    for step in ["refresh"] + sorted(p.name for p in examples.glob("cycle-*")):
        changes = {}                                # table -> rows of this step, in file order
        for f in sorted((examples / step).glob("*.csv")):
            changes.setdefault(table_of(f.name), []).extend(read_csv(f))
        for t, (keys, data_cols, state) in tables.items():
            if step == "refresh":
                state.clear()                       # refresh replaces every table
            apply_rows(state, changes.get(t, []), keys, data_cols)
    return tables


# ---------------------------------------------------------------- comparing with the lake

def same(expected, actual):
    """Compare a CSV text value (or None) with a value read from Delta, by the latter's type."""
    if expected is None or actual is None:
        return expected is None and actual is None  # NULL only equals NULL ('' is not NULL)
    try:
        if isinstance(actual, bool):
            return expected.strip().lower() in ("true", "t", "1", "yes", "y") if actual \
                else expected.strip().lower() in ("false", "f", "0", "no", "n")
        if isinstance(actual, int):
            return int(expected) == actual
        if isinstance(actual, Decimal):
            return Decimal(expected) == actual      # 12.50 == 12.5
        if isinstance(actual, float):
            return math.isclose(float(expected), actual, rel_tol=1e-12)
        if isinstance(actual, dt.datetime):
            if actual.tzinfo is not None:           # a UTC timestamp: compare as naive UTC
                actual = actual.astimezone(dt.timezone.utc).replace(tzinfo=None)
            return dt.datetime.fromisoformat(expected) == actual
        if isinstance(actual, dt.date):
            return dt.date.fromisoformat(expected) == actual
        if isinstance(actual, bytes):
            return bytes.fromhex(expected) == actual
    except (ValueError, InvalidOperation):
        return False
    return expected == str(actual)


def canon_key(v):
    """Key value in a form both sides share: ints as decimal text, the rest as text."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, (int, Decimal)):
        return str(v)
    try:
        return str(int(v))
    except ValueError:
        return str(v)


def find_table(lake, base):
    """Where the table for base name `sales.order_lines` lies: LAKE/sales.order_lines,
    else LAKE/sales/order_lines. Returns None when neither holds a Delta table."""
    for cand in (lake / base, lake.joinpath(*base.split("."))):
        if (cand / "_delta_log").is_dir():
            return cand
    return None


def check_table(lake, base, keys, data_cols, want):
    """Return (path, list of difference lines) for one table."""
    import pyarrow
    from deltalake import DeltaTable
    path = find_table(lake, base)
    if path is None:
        return None, [f"no Delta table at {lake / base}"]
    table = DeltaTable(str(path))
    # scan() applies deletion vectors; to_pyarrow_table() refuses tables that have them.
    rows = pyarrow.table(table.scan()).to_pylist()
    names = {f.name.lower(): f.name for f in table.schema().fields}   # lower -> as stored
    diffs = []
    missing = [c for c in data_cols if c not in names]
    unexpected = [n for l, n in names.items()
                  if l not in data_cols and l not in EXTRA_COLS and not l.startswith("hvr_")]
    diffs += [f"missing column {c}" for c in missing] + [f"unexpected column {c}" for c in unexpected]
    if missing:
        return path, diffs
    want = {tuple(canon_key(v) for v in k): r for k, r in want.items()}
    got = {}
    for r in rows:
        k = tuple(canon_key(r[names[c]]) for c in keys)
        if k in got:
            diffs.append(f"duplicate key {k}")
        got[k] = r
    for k in sorted(want.keys() - got.keys(), key=str):
        diffs.append(f"missing row  {k}: {want[k]}")
    for k in sorted(got.keys() - want.keys(), key=str):
        diffs.append(f"extra row    {k}: {got[k]}")
    for k in sorted(want.keys() & got.keys(), key=str):
        for c in data_cols:
            e, a = want[k][c], got[k][names[c]]
            if not same(e, a):
                diffs.append(f"key {k} column {c}: expected {e!r}, got {a!r}")
    return path, diffs


def main(argv):
    if len(argv) != 3:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    lake, examples = Path(argv[1]), Path(argv[2])
    env = read_env(examples / "channel.env")
    tables = expected_tables(examples, env)
    passed = failed = 0
    for (t, (keys, data_cols, want)), base in zip(tables.items(), env["HVR_BASE_NAMES"].split(":")):
        path, diffs = check_table(lake, base, keys, data_cols, want)
        if diffs:
            failed += 1
            print(f"FAIL {t} ({path or lake / base}):")
            for d in diffs:
                print("  " + d)
        else:
            passed += 1
            print(f"ok   {t} ({path}): {len(want)} rows")
    print(f"check_examples: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # The deltalake package's native threads sometimes abort the interpreter's teardown
    # ("terminate called without an active exception", exit 134) after every check passed:
    # leave without tearing down.
    os._exit(code)
