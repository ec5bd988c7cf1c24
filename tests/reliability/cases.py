"""What crmlab promises under bad input, faults and concurrency: one line per case.

Add a case by adding a line: ``Case(name, expect, rows=... | file=... | project="trained", config=...,
argv=..., before=..., keeps=..., absent=...)``; see :mod:`tests.reliability.suite` for what each field means.
The README's table "What crmlab promises" summarises these cases; keep the two in step.
"""

from __future__ import annotations

from pathlib import Path

from .suite import BASE, Case, Clean, Fails, Runs

SCORE = ("score", "--out", "scores.parquet")
#: Scoring with the bundles in models/ (by default the registry's champion scores where there is one).
SCORE_MODELS = (*SCORE, "--source", "models")


def _edit_params(root: Path) -> None:
    """A harmless-looking edit of the CLV bundle's params.json after export."""
    params = root / "models" / "clv" / "params.json"
    params.write_text(params.read_text().replace("{", "{\n ", 1))


def _python_tag(root: Path) -> None:
    """A YAML tag that would run a command if the config were loaded unsafely."""
    with open(root / "configs" / "project.yaml", "a", encoding="utf-8") as fh:
        fh.write('name: !!python/object/apply:os.system ["touch pwned"]\n')


def _forge_manifest(root: Path) -> None:
    """A forged model version in the CLV bundle's manifest (its checksums left as they were)."""
    manifest = root / "models" / "clv" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"bundle_hash": "', '"bundle_hash": "f0', 1))


def _drop_manifest(root: Path) -> None:
    (root / "models" / "clv" / "manifest.json").unlink()


CASES: list[Case] = [
    # --- cleaning: every row ends clean, rejected with its reason, or a counted duplicate ----------------------
    Case("a valid log is kept whole", Clean()),
    Case("missing customer id", Clean({"missing customer_id": 1}), rows=",2024-03-01,5\n"),
    Case("missing amount", Clean({"missing amount": 1}), rows="c01,2024-03-01,\n"),
    Case("missing date", Clean({"missing ts": 1}), rows="c01,,5\n"),
    Case("unparseable amount", Clean({"unparseable amount": 1}), rows="c01,2024-03-01,abc\n"),
    Case("impossible date", Clean({"unparseable date in ts": 1}), rows="c01,2024-13-02,5\n"),
    Case("date after max_date", Clean({"date in the future": 1}), rows="c01,2026-03-01,5\n"),
    Case("currency and thousands", Clean(), rows='c01,2024-03-01,"$1,234.50"\nc02,2024-03-02,1234.5元\n'),
    Case("return in brackets", Clean(), rows="c01,2024-03-01,(15.00)\n"),
    Case("mostly unparseable dates name the column", Fails(2, "tx.csv", "column 'ts'", "cleaning.date_formats", "someday"),
         file=("tx.csv", "customer_id,ts,amount\n" + "c1,someday,5\n" * 20)),
    Case("required column missing", Fails(2, "tx.csv", "customer_id"), file=("tx.csv", "id,ts,amount\nc1,2024-01-01,5\n")),
    Case("mapping onto an existing column", Fails(2, "amount", "gross"),
         file=("tx.csv", "customer_id,ts,amount,gross\nc1,2024-01-01,5,6\n"),
         config={"data": {"transactions": {"columns": {"amount": "gross"}}}}),
    Case("data file missing", Fails(2, "nope.csv"), config={"data": {"transactions": {"path": "nope.csv"}}}),
    Case("unknown encoding", Fails(2, "encoding", "klingon"),
         config={"data": {"transactions": {"encoding": "klingon"}}}),
    Case("a 1900-01-01 placeholder date", Clean({"date implausibly early": 1}), rows="c01,1900-01-01,5\n"),
    Case("7 digits read as a 1600s date", Clean({"date implausibly early": 1}), rows="c01,1600101,5\n"),
    Case("an earlier date than min_date", Clean({"date implausibly early": 5}),
         config={"cleaning": {"min_date": "2024-02-15"}}),
    Case("an amount too large for any sum", Clean({"amount out of range": 2}),
         rows="c01,2024-03-01," + "9" * 400 + "\nc02,2024-03-01,5000000000000\n"),
    Case("day-first dates decided by the column", Clean(says=("%d/%m/%Y, not %m/%d/%Y",)),
         rows="c01,31/01/2024,5\nc02,03/04/2024,5\n"),
    Case("dates no row decides", Fails(2, "column 'ts'", "4 March 2024", "3 April 2024", "day_first"),
         rows="c01,03/04/2024,5\n"),
    Case("dates of both orders in one column", Fails(2, "column 'ts'", "mixes dates of two orders"),
         rows="c01,31/01/2024,5\nc02,01/31/2024,5\n"),
    Case("ids that differ only by zeros or case", Clean(says=("2 group(s)", "merge_similar_ids")),
         rows="C01,2024-03-01,5\n007,2024-03-01,5\n7,2024-03-01,5\n"),
    Case("similar ids merged when asked", Clean(says=("2 merged",)), rows="C01,2024-03-01,5\n007,2024-03-01,5\n7,2024-03-01,5\n",
         config={"cleaning": {"merge_similar_ids": True}}),
    Case("one account with most of the spend", Clean(says=("holds", "of the spend")),
         rows="c01,2024-03-01,90000000\n"),
    Case("a semicolon-separated file", Clean(kept=30), file=("tx.csv", BASE.replace(",", ";"))),
    Case("a tab-separated file", Clean(kept=30), file=("tx.tsv", BASE.replace(",", "\t"))),
    Case("a European export: ';' and decimal commas", Clean(kept=2, says=("decimal comma read as a point",)),
         file=("tx.csv", "customer_id;ts;amount\nc1;2024-01-31;12,50\nc2;2024-02-01;1.234,50\n")),
    Case("a separator set wrong", Fails(2, "tx.csv", "semicolon-separated", "sep: ';'"),
         file=("tx.csv", BASE.replace(",", ";")), config={"data": {"transactions": {"sep": ","}}}),
    Case("an endless device as the data", Fails(2, "/dev/zero", "not a regular file"),
         config={"data": {"transactions": {"path": "/dev/zero"}}}),
    # --- the command line ----------------------------------------------------------------------------------
    Case("missing config folder", Fails(2, "confgs"), argv=("-c", "confgs", "data", "clean")),
    Case("a python tag in the YAML config", Fails(2, "project.yaml", "not valid YAML", "python/object"),
         before=_python_tag, absent="pwned"),
    Case("impossible --set date", Fails(2, "project.as_of", "2024-13-01"),
         argv=("--set", "project.as_of=2024-13-01", "data", "clean")),
    # --- scoring: a trained model that cannot be loaded is an error, the previous file stays -------------------
    Case("score a trained project", Runs("not scoring churn: never trained"), project="trained", argv=SCORE),
    Case("plain score takes the champion", Runs("scoring clv with the registry's champion"), project="trained",
         argv=SCORE, before=_edit_params),
    Case("edited params.json", Fails(2, "params.json", "checksum mismatch"), project="trained", argv=SCORE_MODELS,
         before=_edit_params, keeps="scores.parquet"),
    Case("forged bundle_hash in the manifest", Fails(2, "manifest.json", "checksum mismatch"), project="trained",
         argv=SCORE_MODELS, before=_forge_manifest, keeps="scores.parquet"),
    Case("bundle without manifest", Fails(2, "cannot score with the clv model"), project="trained", argv=SCORE_MODELS,
         before=_drop_manifest, keeps="scores.parquet"),
]

__all__ = ["BASE", "CASES"]
