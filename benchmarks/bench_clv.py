"""Benchmark the CLV model core at scale: fit BG/NBD + Gamma-Gamma and score every customer.

The CDNOW log (23,570 customers, 69,659 transactions, 1997-01 to 1998-06) is summarised into RFM
(lifetimes' convention: purchase days, weeks, as_of 1998-06-30) and replicated ``--replicas`` times
(144: about 3.39 million customers, the customer base of about 10 million transactions). Then it
times fitting (BG/NBD + Gamma-Gamma) and scoring (P(alive), expected purchases over 52 weeks,
expected spend, 12-month CLV), and the same work in lifetimes for reference.

Replicating the base keeps the number of *distinct* histories at CDNOW's, which is what fitting on
weighted unique rows exploits; ``--simulated`` adds runs on simulated customers with day-resolution
histories over three years (many distinct histories, as in a real log) and with continuous ages (every
history distinct: the worst case for unique-row compression).

    .venv/bin/python benchmarks/bench_clv.py [--replicas 144] [--repeat 3] [--lifetimes-fraction 0.1]
                                             [--simulated 3394080] [--simulated-resolution day continuous]
                                             [--bundle models/clv] [--previous-src /tmp/old/src] [--log-only]

First (``--log-only``: only this), scoring the whole base from the transaction log: the CDNOW log
replicated ``--replicas`` times (144: 10.0M transactions, 3.39M customers) scored with
``score_clv(transactions, bundle, as_of=...)`` (RFM summary, P(alive), expected purchases, spend, CLV
and its interval), against the naive lifetimes path on the same log in the same process:
``summary_data_from_transaction_data(freq="D")`` (recency and T then in weeks) and BetaGeoFitter /
GammaGammaFitter with the bundle's parameters (``conditional_probability_alive``,
``conditional_expected_number_of_purchases_up_to_time``, ``conditional_expected_average_profit``,
``customer_lifetime_value``). Printed as the ratio naive / crmlab, with the largest differences of
P(alive) and expected purchases. The bundle is BG/NBD + Gamma-Gamma fitted on CDNOW's RFM at 1998-06-30
(exported to a temporary folder) unless ``--bundle`` names one (a blend also builds the shared
features). ``--previous-src OTHER/src`` times the same ``score_clv`` call of another checkout (a git
worktree of the previous commit, say) in a child process right after, on the same data: the ratio
previous / now.
"""

from __future__ import annotations

import argparse
import gc
import logging
import platform
import resource
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from crmlab.clv.models import SpendModel, TransactionModel, customer_lifetime_value
from crmlab.data.io import load_cdnow

log = logging.getLogger("bench_clv")

AS_OF = pd.Timestamp("1998-06-30")


def rfm_summary_local(tx: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """RFM per customer in lifetimes' convention (purchase *days*; weeks): frequency = purchase days
    - 1, recency = weeks from first to last purchase day, T = weeks from first purchase day to as_of,
    monetary_value = mean spend of the repeat purchase days (0 for one-time buyers)."""
    tx = tx.loc[tx["ts"] <= as_of, ["customer_id", "ts", "amount"]]
    days = (
        tx.assign(day=tx["ts"].dt.floor("D"))
        .groupby(["customer_id", "day"], sort=True, observed=True)["amount"]
        .sum()
        .reset_index()
    )
    g = days.groupby("customer_id", sort=True, observed=True)
    out = g.agg(first=("day", "min"), last=("day", "max"), n=("day", "size"), total=("amount", "sum"),
                first_amount=("amount", "first"))
    week = pd.Timedelta(days=7)
    frequency = out["n"] - 1
    return pd.DataFrame(
        {
            "customer_id": out.index.to_numpy(),
            "frequency": frequency.to_numpy(np.float64),
            "recency": ((out["last"] - out["first"]) / week).to_numpy(np.float64),
            "T": ((as_of - out["first"]) / week).to_numpy(np.float64),
            "monetary_value": np.where(frequency > 0, (out["total"] - out["first_amount"]) / frequency.clip(lower=1), 0.0),
        }
    )


def cdnow_rfm() -> tuple[pd.DataFrame, str]:
    tx = load_cdnow()
    try:  # the shared feature module, when it exists
        from crmlab.features import rfm_summary  # type: ignore[attr-defined]

        rfm = rfm_summary(tx, as_of=AS_OF.date())
        rfm = rfm[["frequency", "recency", "T", "monetary_value"]].astype(np.float64)
        return rfm, "crmlab.features.rfm_summary"
    except (ImportError, AttributeError, TypeError, KeyError):
        return rfm_summary_local(tx, as_of=AS_OF), "local groupby (benchmarks/bench_clv.py)"


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    gc.collect()
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def timed_runs(fn: Callable[[], Any], repeat: int) -> tuple[Any, float, float]:
    """(result, best, median) wall time over ``repeat`` runs (the machine is shared: the best run is
    the cost of the code, the median what a job sees)."""
    times = []
    for _ in range(repeat):
        out, el = timed(fn)
        times.append(el)
    return out, min(times), float(np.median(times))


def peak_mb(fn: Callable[[], Any]) -> float:
    """Peak memory allocated by ``fn`` above what was allocated before it (tracemalloc, which numpy
    and pandas report their buffers to)."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / 2**20


def simulate_customers(n: int, resolution: str = "day", seed: int = 0) -> dict[str, np.ndarray]:
    """BG/NBD + Gamma-Gamma customers (CDNOW-like parameters, weeks) who joined over three years.
    With ``resolution="day"`` ages are whole days, as from a real transaction log; "continuous"
    makes (nearly) every history distinct, the worst case for unique-row compression."""
    rng = np.random.default_rng(seed)
    r, alpha, a, b = 0.243, 4.414, 0.793, 2.426
    T = rng.uniform(1.0, 156.0, n)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    n_tx = rng.poisson(lam * T)
    x = np.minimum(n_tx, rng.geometric(p))
    tx = np.where(x > 0, T * rng.beta(np.maximum(x, 1), n_tx - x + 1), 0.0)
    if resolution == "day":
        T = np.round(T * 7.0) / 7.0
        tx = np.minimum(np.round(tx * 7.0) / 7.0, T)
    xs = np.maximum(x, 1)
    m = np.where(x > 0, rng.gamma(6.25 * xs, 1.0 / (xs * rng.gamma(3.74, 1 / 15.44, n))), 0.0)
    return {"frequency": x.astype(np.float64), "recency": tx, "T": T, "monetary_value": m}


def fitted_bundle(folder: str) -> str:
    """BG/NBD + Gamma-Gamma fitted on CDNOW's RFM at AS_OF, exported as a CLV bundle in ``folder``."""
    from crmlab.clv.bundle import export_bundle
    from crmlab.clv.result import ClvModels, ClvSettings, ClvWindow

    rfm, _ = cdnow_rfm()
    tm = TransactionModel("bgnbd").fit(rfm["frequency"], rfm["recency"], rfm["T"])
    sm = SpendModel().fit(rfm["frequency"], rfm["monetary_value"])
    day = AS_OF.date()
    window = ClvWindow(first_date=day, last_date=day, as_of=day, calibration_start=None, calibration_end=day,
                       holdout_end=day, time_unit="W")
    return str(export_bundle(f"{folder}/clv", ClvModels(tm, sm), ClvSettings(), window, metrics={},
                             config_digest="bench_clv"))


def cpu_timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall s, CPU s of the process: all its threads). On a shared machine the CPU time is the
    steadier measure of the work done; the wall time is what a job sees."""
    gc.collect()
    cpu, start = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start, time.process_time() - cpu


def time_score_clv(tx: pd.DataFrame, bundle: str, repeat: int) -> tuple[pd.DataFrame, float, float]:
    """(scores, best wall, best CPU) of ``repeat`` runs."""
    from crmlab.clv.bundle import score_clv

    runs = [cpu_timed(lambda: score_clv(tx, bundle, as_of=AS_OF.date())) for _ in range(repeat)]
    return runs[-1][0], min(r[1] for r in runs), min(r[2] for r in runs)


def naive_lifetimes(tx: pd.DataFrame, bundle: str) -> pd.DataFrame:
    """The naive path: lifetimes' summary of the log, then its fitters' methods with the bundle's parameters."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data

    from crmlab.export import as_bundle

    params = as_bundle(bundle, "clv").params
    horizon = params["clv"]["horizon_months"] * 30.4375 / 7.0
    rfm = summary_data_from_transaction_data(tx, "customer_id", "ts", monetary_value_col="amount",
                                             observation_period_end=AS_OF, freq="D")
    f, r, T, m = rfm["frequency"], rfm["recency"] / 7.0, rfm["T"] / 7.0, rfm["monetary_value"]
    bg, gg = BetaGeoFitter(), GammaGammaFitter()
    bg.params_ = pd.Series(params["transaction_model"]["params"])
    gg.params_ = pd.Series(params["spend_model"]["params"])
    bg.predict = bg.conditional_expected_number_of_purchases_up_to_time  # what fit() would set
    return pd.DataFrame({
        "p_alive": bg.conditional_probability_alive(f, r, T),
        "expected_purchases": bg.conditional_expected_number_of_purchases_up_to_time(horizon, f, r, T),
        "expected_spend": gg.conditional_expected_average_profit(f, m),
        "clv": gg.customer_lifetime_value(bg, f, r, T, m, time=params["clv"]["horizon_months"],
                                          discount_rate=params["clv"]["discount_rate_monthly"], freq="W"),
        "monetary_value": m,
    }, index=rfm.index)


def score_from_log(args: argparse.Namespace) -> None:
    import json
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_features import make_data

    tx = make_data(args.replicas, extra_columns=False, order="customer")
    if args.child:  # the previous checkout's timing, for the parent
        _, wall, cpu = time_score_clv(tx, args.bundle, args.repeat)
        print(json.dumps({"wall": wall, "cpu": cpu}))
        return
    with tempfile.TemporaryDirectory(prefix="bench-clv-") as tmp:
        bundle = args.bundle or fitted_bundle(tmp)
        log.info("\n== score every customer from the transaction log: %d transactions, %d customers, bundle %s",
                 len(tx), tx["customer_id"].nunique(), "BG/NBD + Gamma-Gamma fitted on CDNOW" if not args.bundle
                 else args.bundle)
        ours, wall, cpu = time_score_clv(tx, bundle, args.repeat)
        log.info("  crmlab score_clv(transactions)            %6.2f s wall, %6.2f s CPU (best of %d; P(alive), purchases, "
                 "spend, CLV and its interval)", wall, cpu, args.repeat)
        previous = None
        if args.previous_src:
            env = {**os.environ, "PYTHONPATH": args.previous_src}
            cmd = [sys.executable, __file__, "--child", "--bundle", bundle, "--replicas", str(args.replicas),
                   "--repeat", str(args.repeat)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            previous = json.loads(done.stdout.strip().splitlines()[-1])
            log.info("  previous crmlab (%s)  %6.2f s wall, %6.2f s CPU: now x%.1f faster (wall), x%.1f (CPU)",
                     args.previous_src, previous["wall"], previous["cpu"], previous["wall"] / wall,
                     previous["cpu"] / cpu)
        if args.no_lifetimes:
            return
        theirs, el, el_cpu = cpu_timed(lambda: naive_lifetimes(tx, bundle))
        log.info("  naive lifetimes (summary + fitters)       %6.2f s wall, %6.2f s CPU", el, el_cpu)
        log.info("  => crmlab is x%.1f faster than the naive lifetimes path in this run (wall; x%.1f in CPU time)",
                 el / wall, el_cpu / cpu)
        ours = ours.set_index("customer_id").reindex(theirs.index.astype(str))
        # spend: crmlab scores a repeat customer with a mean spend <= 0 at the population mean (spend_rule exclude)
        positive = (theirs["monetary_value"] > 0).to_numpy()
        for col, rows in (("p_alive", slice(None)), ("expected_purchases", slice(None)), ("expected_spend", positive)):
            a, b = ours[col].to_numpy()[rows], theirs[col].to_numpy(np.float64)[rows]
            log.info("  %-18s largest difference %.2e (relative %.2e)%s", col, np.max(np.abs(a - b)),
                     np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)),
                     "" if col != "expected_spend" else " (repeat customers with a positive mean spend)")
        rel = np.abs(ours["clv"].to_numpy()[positive] / theirs["clv"].to_numpy(np.float64)[positive] - 1)
        log.info("  clv                largest relative difference %.2e (lifetimes' months are 4.345 weeks, "
                 "crmlab's 4.348)", np.max(rel))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=144, help="copies of the CDNOW customer base (144: 3.39M)")
    parser.add_argument("--lifetimes-fraction", type=float, default=0.1,
                        help="share of the rows lifetimes is timed on (extrapolated linearly); 1 for all")
    parser.add_argument("--simulated", type=int, default=3_394_080,
                        help="also fit and score this many simulated customers with many distinct histories (0: skip)")
    parser.add_argument("--simulated-resolution", nargs="+", choices=["day", "continuous"], default=["day", "continuous"],
                        help="time resolution of the simulated histories (continuous: all distinct, the worst case)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per crmlab timing (best and median shown)")
    parser.add_argument("--no-lifetimes", action="store_true", help="skip the lifetimes reference timings")
    parser.add_argument("--bundle", help="CLV bundle to score the log with (default: BG/NBD + Gamma-Gamma fitted here)")
    parser.add_argument("--previous-src", help="also time score_clv of this src folder (another checkout)")
    parser.add_argument("--log-only", action="store_true", help="only the scoring from the transaction log")
    parser.add_argument("--no-log", action="store_true", help="skip the scoring from the transaction log")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("crmlab", "lightgbm"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.child or not args.no_log:
        score_from_log(args)
        if args.child or args.log_only:
            return

    log.info("machine: %s, %s, python %s, numpy %s, pandas %s", platform.machine(), platform.processor() or "?",
             platform.python_version(), np.__version__, pd.__version__)
    (rfm, source), t_rfm = timed(cdnow_rfm)
    log.info("CDNOW RFM (as_of %s, weeks) from %s: %d customers in %.2f s", AS_OF.date(), source, len(rfm), t_rfm)
    cols = {c: np.tile(rfm[c].to_numpy(np.float64), args.replicas) for c in ("frequency", "recency", "T", "monetary_value")}
    f, r, T, m = cols["frequency"], cols["recency"], cols["T"], cols["monetary_value"]
    n = f.size
    n_unique = len(pd.DataFrame({"f": f[: len(rfm)], "r": r[: len(rfm)], "T": T[: len(rfm)]}).drop_duplicates())
    log.info("replicated x%d: %d customers, %d distinct (frequency, recency, T) histories", args.replicas, n, n_unique)

    # ------------------------------------------------------------------ crmlab
    rep = args.repeat
    log.info("\n== crmlab fit (%d customers; wall time best / median of %d runs)", n, rep)
    tm, best, med = timed_runs(lambda: TransactionModel("bgnbd").fit(f, r, T), rep)
    log.info("  BG/NBD          %6.2f / %6.2f s  %s", best, med, {k: round(v, 4) for k, v in tm.params_.items()})
    sm, best, med = timed_runs(lambda: SpendModel().fit(f, m), rep)
    log.info("  Gamma-Gamma     %6.2f / %6.2f s  %s  (%d non-positive spends excluded)", best, med,
             {k: round(v, 4) for k, v in sm.params_.items()}, sm.report_["n_excluded"])
    _, best, med = timed_runs(lambda: (TransactionModel("bgnbd").fit(f, r, T), SpendModel().fit(f, m)), rep)
    log.info("  fit total       %6.2f / %6.2f s", best, med)

    def score_all(tm=tm, sm=sm, f=f, r=r, T=T, m=m) -> dict[str, np.ndarray]:
        return {
            "p_alive": tm.probability_alive(f, r, T),
            "purchases_52w": tm.predict_purchases(52.0, f, r, T),
            "spend": sm.conditional_expected_spend(f, m),
            "clv_12m": customer_lifetime_value(tm, sm, f, r, T, m, horizon_months=12, discount_rate_monthly=0.01),
        }

    parts = {
        "P(alive)": lambda: tm.probability_alive(f, r, T),
        "purchases 52w": lambda: tm.predict_purchases(52.0, f, r, T),
        "expected spend": lambda: sm.conditional_expected_spend(f, m),
        "CLV 12 months": lambda: customer_lifetime_value(tm, sm, f, r, T, m),
    }
    log.info("\n== crmlab score (%d customers; best / median of %d runs)", n, rep)
    for name, fn in parts.items():
        _, best, med = timed_runs(fn, rep)
        log.info("  %-15s %6.2f / %6.2f s", name, best, med)
    scores, best, med = timed_runs(score_all, rep)
    log.info("  score total     %6.2f / %6.2f s (all four, one after the other)", best, med)
    log.info("  mean P(alive) %.4f, mean purchases 52w %.4f, mean spend %.2f, total CLV %.4g",
             scores["p_alive"].mean(), scores["purchases_52w"].mean(), scores["spend"].mean(), scores["clv_12m"].sum())
    del scores

    mem_fit = peak_mb(lambda: (TransactionModel("bgnbd").fit(f, r, T), SpendModel().fit(f, m)))
    mem_score = peak_mb(score_all)
    inputs_mb = sum(a.nbytes for a in cols.values()) / 2**20
    log.info("\n== memory: inputs %.0f MB; peak extra while fitting %.0f MB, while scoring %.0f MB (tracemalloc)",
             inputs_mb, mem_fit, mem_score)

    # ------------------------------------------------------------------ simulated, many distinct histories
    for resolution in args.simulated_resolution:
        if not args.simulated:
            break
        sim = simulate_customers(args.simulated, resolution)
        fs, rs, Ts, ms = sim["frequency"], sim["recency"], sim["T"], sim["monetary_value"]
        frame = pd.DataFrame({"f": fs, "r": rs, "T": Ts})
        log.info("\n== simulated: %d customers over 3 years, %s resolution: %d distinct (frequency, recency, T), "
                 "%d distinct (frequency, T)", fs.size, resolution, len(frame.drop_duplicates()),
                 len(frame[["f", "T"]].drop_duplicates()))
        tms, best, med = timed_runs(lambda: TransactionModel("bgnbd").fit(fs, rs, Ts), rep)
        log.info("  fit BG/NBD      %6.2f / %6.2f s", best, med)
        sms, best, med = timed_runs(lambda: SpendModel().fit(fs, ms), rep)
        log.info("  fit Gamma-Gamma %6.2f / %6.2f s", best, med)
        for name, fn in {
            "P(alive)": lambda: tms.probability_alive(fs, rs, Ts),
            "purchases 52w": lambda: tms.predict_purchases(52.0, fs, rs, Ts),
            "expected spend": lambda: sms.conditional_expected_spend(fs, ms),
            "CLV 12 months": lambda: customer_lifetime_value(tms, sms, fs, rs, Ts, ms),
        }.items():
            _, best, med = timed_runs(fn, rep)
            log.info("  %-15s %6.2f / %6.2f s", name, best, med)
        del sim, fs, rs, Ts, ms, frame

    # ------------------------------------------------------------------ lifetimes reference
    if args.no_lifetimes:
        log.info("\nmax RSS of the process: %.0f MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    k = max(1, int(round(n * args.lifetimes_fraction)))
    scale = n / k
    fk, rk, Tk, mk = f[:k], r[:k], T[:k], m[:k]
    rep = (fk > 0) & (mk > 0)
    note = "" if k == n else f" (on {k} rows = {args.lifetimes_fraction:.0%}, x{scale:.0f} extrapolated)"
    log.info("\n== lifetimes 0.11 reference%s", note)
    bg, el = timed(lambda: BetaGeoFitter().fit(fk, rk, Tk))
    log.info("  BetaGeoFitter.fit, one row per customer     %7.2f s -> %7.1f s", el, el * scale)
    gg, el = timed(lambda: GammaGammaFitter().fit(fk[rep], mk[rep]))
    log.info("  GammaGammaFitter.fit, one row per customer  %7.2f s -> %7.1f s", el, el * scale)
    uniq = pd.DataFrame({"f": f, "r": r, "T": T}).value_counts().reset_index()
    _, el = timed(lambda: BetaGeoFitter().fit(uniq["f"].to_numpy(), uniq["r"].to_numpy(), uniq["T"].to_numpy(),
                                              weights=uniq["count"].to_numpy()))
    log.info("  BetaGeoFitter.fit, weighted unique rows     %7.2f s (all %d customers)", el, n)
    _, el = timed(lambda: bg.conditional_probability_alive(fk, rk, Tk))
    log.info("  conditional_probability_alive               %7.2f s -> %7.1f s", el, el * scale)
    _, el = timed(lambda: bg.conditional_expected_number_of_purchases_up_to_time(52.0, fk, rk, Tk))
    log.info("  conditional_expected_number_..._up_to_time  %7.2f s -> %7.1f s", el, el * scale)
    _, el = timed(lambda: gg.conditional_expected_average_profit(fk, mk))
    log.info("  conditional_expected_average_profit         %7.2f s -> %7.1f s", el, el * scale)
    sk = pd.Series(fk)
    _, el = timed(lambda: gg.customer_lifetime_value(bg, sk, pd.Series(rk), pd.Series(Tk), pd.Series(mk),
                                                       time=12, discount_rate=0.01, freq="W"))
    log.info("  customer_lifetime_value (12 months)         %7.2f s -> %7.1f s", el, el * scale)
    log.info("\nmax RSS of the process: %.0f MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


if __name__ == "__main__":
    main()
