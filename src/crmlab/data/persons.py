"""One person, one id: customers merged on e-mail or phone, and ids that differ only in form (case, spaces, leading zeros, scientific notation) reported or merged."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from crmlab.config import CleaningConfig
from crmlab.data.parse import as_text, bool_mask
from crmlab.data.cleaning_report import CleanReport, Stage

log = logging.getLogger(__name__)


def _email_key(s: pd.Series) -> pd.Series:
    text = as_text(s).str.replace(r"\s+", "", regex=True).str.lower()
    return text.where(bool_mask(text.str.contains("@", regex=False)))


def _phone_key(s: pd.Series) -> pd.Series:
    digits = as_text(s).str.replace(r"\D+", "", regex=True)
    digits = digits.where(bool_mask(digits.str.len() >= 7))
    return digits.str.slice(-10)


def merge_customers(stage: Stage, cfg: CleaningConfig) -> pd.DataFrame:
    """Merge rows of one person (shared id, email or phone) into one; return the id map."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    df = stage.work
    empty_map = pd.DataFrame({"source_id": pd.Series([], dtype="str"), "customer_id": pd.Series([], dtype="str")})
    if df.empty:
        return empty_map
    id_codes, ids = pd.factorize(df["customer_id"])
    n_ids = len(ids)
    src, dst = [np.arange(n_ids)], [np.arange(n_ids)]
    offset = n_ids
    if cfg.dedupe_customers:
        for key in dict.fromkeys(cfg.match_on):
            cols = [c for c in stage.match.get(key, ()) if c in df.columns]
            if not cols:
                continue
            # every e-mail (phone) column of the table is one pool of keys: a shared value links two ids
            k = pd.concat([_email_key(df[c]) if key == "email" else _phone_key(df[c]) for c in cols],
                          ignore_index=True)
            rows = np.tile(id_codes, len(cols))
            has = bool_mask(k.notna())
            codes, uniques = pd.factorize(k[has])
            src.append(rows[has])
            dst.append(codes + offset)
            offset += len(uniques)
    a, b = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(offset, offset))
    _, labels = connected_components(graph, directed=False)
    comp = labels[:n_ids]
    if len(np.unique(comp)) == len(df):
        return empty_map  # every row its own person: nothing to merge

    signup = (df["signup_date"].groupby(id_codes).min().reindex(range(n_ids)).to_numpy()
              if "signup_date" in df.columns else np.full(n_ids, np.datetime64("NaT"), dtype="datetime64[us]"))
    idf = pd.DataFrame({
        "comp": comp,
        "signup": signup,
        "num": pd.to_numeric(pd.Series(np.asarray(ids, dtype=object)), errors="coerce").to_numpy(),
        "id": pd.Series(np.asarray(ids, dtype=object), dtype="str"),
    })
    idf = idf.sort_values(["comp", "signup", "num", "id"], na_position="last", kind="stable")
    rank = np.empty(n_ids, dtype=np.int64)
    rank[idf.index.to_numpy()] = np.arange(n_ids)
    canonical_of_comp = idf.drop_duplicates("comp").set_index("comp")["id"]
    canonical = canonical_of_comp.reindex(comp).to_numpy(dtype=object)

    rows = df.assign(_person=comp[id_codes], _rank=rank[id_codes], _row=df.index.to_numpy())
    rows = rows.sort_values(["_rank", "_row"], kind="stable")
    merged = rows.groupby("_person", sort=False).first()
    merged["customer_id"] = canonical_of_comp.reindex(merged.index).to_numpy(dtype=object)
    merged = merged.sort_values("_row", kind="stable")
    merged.index = pd.Index(merged["_row"].to_numpy())
    merged = merged.drop(columns=["_rank", "_row"])[list(df.columns)]
    for col in df.columns:  # groupby.first can loosen dtypes: restore them
        if merged[col].dtype != df[col].dtype:
            merged[col] = merged[col].astype(df[col].dtype)

    stage.report.merged_rows = len(df) - len(merged)
    stage.work = merged
    source = pd.Series(np.asarray(ids, dtype=object), dtype="str")
    target = pd.Series(canonical, dtype="str")
    moved = bool_mask(source != target)
    id_map = pd.DataFrame({"source_id": source[moved].to_numpy(), "customer_id": target[moved].to_numpy()})
    id_map = id_map.astype("str").sort_values(["customer_id", "source_id"], ignore_index=True)
    return id_map


def remap_ids(stage: Stage, id_map: pd.DataFrame) -> None:
    if id_map.empty or "customer_id" not in stage.work.columns:
        return
    s = stage.work["customer_id"]
    hit = bool_mask(s.isin(id_map["source_id"]))
    if not hit.any():
        return
    mapping = pd.Series(id_map["customer_id"].to_numpy(), index=id_map["source_id"].to_numpy())
    out = s.copy()
    out.iloc[np.flatnonzero(hit)] = mapping.reindex(s.iloc[np.flatnonzero(hit)].to_numpy()).to_numpy()
    stage.work = stage.work.assign(customer_id=out)
    stage.report.ids_remapped += int(hit.sum())


_SCI = r"[+-]?\d+(?:\.\d+)?[eE][+-]?\d+"


def id_key(ids: pd.Series) -> pd.Series:
    """What a customer id may have been before a spreadsheet or a float touched it: lower case, a number in
    scientific notation written out (``1.23E+02`` -> ``123``), no ``.0`` suffix, no leading zeros."""
    key = ids.str.lower()
    sci = bool_mask(key.str.fullmatch(_SCI))
    if sci.any():
        vals = key[sci].astype("float64")
        whole = np.isfinite(vals.to_numpy()) & (vals.to_numpy() == np.round(vals.to_numpy())) & (vals.abs() < 1e15)
        key.loc[vals.index[whole]] = vals[whole].astype("int64").astype("str")
    key = key.str.replace(r"^([+-]?\d+)\.0+$", r"\1", regex=True)
    # "^0+(\d)" -> "\1" strips the same zeros as "^0+(?=\d)" but without a lookahead, which pyarrow's
    # regular expressions (RE2) lack: on 3.4M ids 0.3 s in Arrow instead of 2 s of Python re calls
    return key.str.replace(r"^0+(\d)", r"\1", regex=True)


def similar_ids(stages: Mapping[str, Stage], cfg: CleaningConfig, report: CleanReport) -> pd.DataFrame:
    """Report customer ids that differ only by leading zeros, a ``.0`` suffix, scientific notation or case;
    with ``cfg.merge_similar_ids`` remap each group to its id with the most rows (ties: the id already in
    its plain form, such as ``123`` or ``c123``, then the first in sort order) in every table. Returns the map (source_id -> customer_id), empty unless merging."""
    empty = pd.DataFrame({"source_id": pd.Series([], dtype="str"), "customer_id": pd.Series([], dtype="str")})
    ids = [st.work["customer_id"].dropna() for st in stages.values() if "customer_id" in st.work.columns]
    if not ids:
        return empty
    counts = pd.concat(ids, ignore_index=True).astype("str").value_counts()
    distinct = pd.Series(counts.index.astype("str"), dtype="str")
    key = id_key(distinct)
    dup = bool_mask(key.duplicated(keep=False))
    if not dup.any():
        return empty
    groups = pd.DataFrame({"id": distinct[dup].to_numpy(), "key": key[dup].to_numpy(),
                           "rows": counts.to_numpy()[dup]})
    groups["plain"] = groups["id"] == groups["key"]  # ties go to the id already in its plain form
    groups = groups.sort_values(["key", "rows", "plain", "id"], ascending=[True, False, False, True], kind="stable")
    head = groups.groupby("key", sort=False)["id"].transform("first")
    n_groups, n_ids = groups["key"].nunique(), len(groups)
    example = groups[groups["key"] == groups["key"].iloc[0]]["id"].tolist()[:4]
    report.similar_id_groups, report.similar_ids = int(n_groups), int(n_ids)
    if not cfg.merge_similar_ids:
        log.warning("customer ids: %d group(s) of ids that differ only by leading zeros, a '.0' suffix, scientific "
                    "notation or letter case (%d ids, e.g. %s) are kept apart; set project.cleaning."
                    "merge_similar_ids: true if each group is one customer", n_groups, n_ids, example)
        return empty
    moved = groups[groups["id"] != head]
    id_map = pd.DataFrame({"source_id": moved["id"].astype("str").to_numpy(),
                           "customer_id": head[moved.index].astype("str").to_numpy()})
    for st in stages.values():
        if "customer_id" in st.work.columns:
            remap_ids(st, id_map)
    report.similar_ids_merged = len(id_map)
    log.info("customer ids: merged %d id(s) into %d that differ from them only by leading zeros, a '.0' suffix, "
             "scientific notation or case (e.g. %s -> %s; project.cleaning.merge_similar_ids)",
             len(id_map), n_groups, id_map["source_id"].iloc[0], id_map["customer_id"].iloc[0])
    return id_map
