"""Putting the past rows in (customer id, day) order fast: one pass when the input is sorted by id,
otherwise one 64-bit integer sort on exact keys read from the ids' bytes (short or code-like ids) or on
a hash of the id packed with the day number, every hashed key checked by a second, independent hash
(a collision re-draws the seeds and, in the end, falls back to exact codes)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

# Seeds of the (key hash, check hash) pairs tried before falling back to exact codes.
_HASH_SEEDS = ((0x5EED_0001, 0x5EED_1001), (0x5EED_0002, 0x5EED_1002), (0x5EED_0003, 0x5EED_1003))


# How many high bits of the key hash are used; lowered only by tests to force collisions.
_HASH_KEEP_BITS = 64


def dense_codes(s: pl.Series) -> np.ndarray:
    """Small dense integer codes (0..k-1) of any column; -1 for missing values."""
    if s.dtype in (pl.Categorical, pl.Enum) or s.dtype == pl.String:
        phys = (s if s.dtype != pl.String else s.cast(pl.Categorical)).to_physical()
    elif s.dtype.is_integer():
        phys = s
    else:
        phys = s.cast(pl.String).cast(pl.Categorical).to_physical()
    null = phys.is_null().to_numpy()
    values = phys.fill_null(0).to_numpy()
    lo, hi = (int(values.min()), int(values.max())) if len(values) else (0, 0)
    if lo >= 0 and hi < 50_000_000:
        present = np.bincount(values[~null], minlength=hi + 1) > 0
        codes = (np.cumsum(present) - 1)[values]
    else:  # wide integer range: rank instead of a lookup table
        codes = phys.rank("dense").fill_null(1).to_numpy().astype(np.int64) - 1
    codes = codes.astype(np.int64, copy=False)
    codes[null] = -1
    return codes


def _byte_matrix(s: pl.Series) -> np.ndarray | None:
    """Text values as a (width, n) uint8 matrix (row j: the j-th byte of every value), shorter
    values padded with NUL bytes.

    None when that would not keep the byte-wise order: values of different lengths that are not
    all ASCII, values holding NUL bytes, empty or very long values."""
    arr = s.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    n = len(arr)
    lo, hi = pc.min_max(pc.binary_length(arr)).values()
    lo, hi = lo.as_py(), hi.as_py()
    if n == 0 or not lo or hi > 64 or pc.any(pc.match_substring(arr, "\x00")).as_py():
        return None
    if lo != hi:
        if not pc.all(pc.string_is_ascii(arr)).as_py():
            return None
        arr = pc.utf8_rpad(arr, hi, "\x00")  # ASCII: one byte per character
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[0] + n * hi]
    return np.ascontiguousarray(data.reshape(n, hi).T)


def _digits(matrix: np.ndarray) -> list[tuple[int, np.ndarray, int]]:
    """Byte positions that vary, each with a lookup table from byte to dense digit and its radix.

    Reading the columns of ``matrix`` as mixed-radix numbers over these digits keeps their byte-wise
    order: positions where every value has the same byte are skipped, and each position's digits
    are the byte values seen there, in order."""
    out = []
    for j in range(matrix.shape[0]):
        present = np.bincount(matrix[j], minlength=256) > 0
        radix = int(present.sum())
        if radix > 1:
            out.append((j, (np.cumsum(present) - 1).astype(np.uint64), radix))
    return out


def _pack(matrix: np.ndarray, digits: Sequence[tuple[int, np.ndarray, int]]) -> np.ndarray:
    key = np.zeros(matrix.shape[1], dtype=np.uint64)
    for j, lut, radix in digits:
        key *= np.uint64(radix)
        key += lut[matrix[j]]
    return key


def _id_keys(ids: pl.Series, bits: int) -> np.ndarray | None:
    """Integer keys below ``2**bits`` that sort like the text ids (equal ids, equal keys), or None.

    The ids' bytes are read as a mixed-radix number (see :func:`_digits`). Numeric or code-like
    ids (``'00017'``, ``'C-10294'``) fit easily; long random ids (UUIDs) do not, which a sample
    of the ids usually shows at once."""
    sample = _byte_matrix(ids.head(50_000))
    if sample is None or math.prod(radix for _, _, radix in _digits(sample)) > 2**bits:
        return None
    matrix = _byte_matrix(ids)
    if matrix is None:
        return None
    digits = _digits(matrix)
    if math.prod(radix for _, _, radix in digits) > 2**bits:
        return None
    return _pack(matrix, digits)


def string_order(s: pl.Series) -> np.ndarray:
    """Permutation that sorts distinct text values byte-wise (UTF-8 order, as polars, pyarrow and
    Python sort text). The values are packed into 64-bit words (see :func:`_digits`), sorted on
    the first word and, where that ties, on all of them: several times faster than a string sort."""
    n = len(s)
    matrix = _byte_matrix(s) if n > 1 else None
    if matrix is None:
        return s.arg_sort().to_numpy()
    words, group, size = [], [], 1
    for digit in _digits(matrix):
        if size * digit[2] > 2**64:
            words.append(_pack(matrix, group))
            group, size = [], 1
        group.append(digit)
        size *= digit[2]
    words.append(_pack(matrix, group))
    perm = pl.Series(words[0]).arg_sort().to_numpy()
    if len(words) == 1:
        return perm
    first = words[0][perm]
    tie = np.flatnonzero(first[1:] == first[:-1])
    if len(tie):
        pos = np.union1d(tie, tie + 1)  # rows of runs that share their first word
        sub = perm[pos]
        perm = perm.copy()
        perm[pos] = sub[np.lexsort([w[sub] for w in reversed(words)])]  # the last key is the primary one
    return perm


def _hash_order(ids: pl.Series, offset: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows sorted by (hash of the customer id, day): the permutation and the new-customer flags.

    None when two customer ids share a key prefix for every seed tried (astronomically rare)."""
    new = np.ones(len(offset), dtype=bool)
    shift = np.uint64(bits)
    for key_seed, check_seed in _HASH_SEEDS:
        h = ids.hash(key_seed).to_numpy()
        if _HASH_KEEP_BITS < 64:
            h = h >> np.uint64(64 - _HASH_KEEP_BITS)
        key = ((h >> shift) << shift) | offset
        del h
        perm = pl.Series(key).arg_sort().to_numpy()
        prefix = key[perm] >> shift
        del key
        np.not_equal(prefix[1:], prefix[:-1], out=new[1:])
        del prefix
        # An independent hash must be constant within each customer segment.
        check = ids.hash(check_seed).to_numpy()[perm]
        same = ~new[1:]
        if not np.any(check[1:][same] != check[:-1][same]):
            return perm, new
        log.debug("customer-id key collision with seed %#x; trying the next seed", key_seed)
    return None


def customer_day_order(ids: pl.Series, day: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, pl.Series]:
    """Order rows by (customer id, day), customers sorted by id.

    Returns the row permutation (None: already in order), the new-customer flag of each ordered
    row and the customer ids in order. Input already sorted by customer id costs one pass; other
    input is sorted on a 64-bit key that packs a hash of the id with the day number (checked for
    collisions, with exact codes as the last resort), then the customers are put in id order.
    """
    n = len(day)
    d_min = int(day.min())
    bits = max(1, (int(day.max()) - d_min).bit_length())
    offset = (day - d_min).astype(np.uint64)
    shift = np.uint64(bits)
    new = np.ones(n, dtype=bool)
    if ids.is_sorted():
        new[1:] = (ids.slice(1) != ids.slice(0, n - 1)).to_numpy()
        if not np.any((day[1:] < day[:-1]) & ~new[1:]):
            return None, new, ids.filter(pl.Series(new))
        codes = (np.cumsum(new) - 1).astype(np.uint64)
        perm = pl.Series((codes << shift) | offset).arg_sort().to_numpy()
        return perm, new, ids.filter(pl.Series(new))  # customers keep their places
    id_key = _id_keys(ids, 64 - bits)
    if id_key is not None:  # exact keys in id order: one sort gives the final order
        key = (id_key << shift) | offset
        del id_key
        perm = pl.Series(key).arg_sort().to_numpy()
        prefix = key[perm] >> shift
        del key
        np.not_equal(prefix[1:], prefix[:-1], out=new[1:])
        return perm, new, ids.gather(perm[new])
    hashed = _hash_order(ids, offset, bits)
    if hashed is None:  # exact fallback: dense codes in id order (slower on unsorted input)
        codes = ids.rank("dense").to_numpy().astype(np.uint64)
        key = (codes << shift) | offset
        perm = pl.Series(key).arg_sort().to_numpy()
        prefix = key[perm] >> shift
        np.not_equal(prefix[1:], prefix[:-1], out=new[1:])
        return perm, new, ids.gather(perm[new])
    perm_h, new_h = hashed
    starts_h = np.flatnonzero(new_h)
    del new_h
    first_ids = ids.gather(perm_h[starts_h])
    order = string_order(first_ids)
    lens = np.diff(np.append(starts_h, n))[order]
    starts = np.zeros(len(order), dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    # row i of the result is row (i - starts[c] + starts_h[order[c]]) of the hash order
    perm = perm_h[np.repeat(starts_h[order] - starts, lens) + np.arange(n)]
    del perm_h
    new[:] = False
    new[starts] = True
    return perm, new, first_ids.gather(order)
