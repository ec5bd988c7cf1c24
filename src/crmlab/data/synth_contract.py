"""A seeded subscription (contract) customer table with a churn column and a known churn process.

:func:`contract_customers` draws a table shaped like a telecom's customer export: tenure, contract
type, internet service, add-on services, payment method, monthly and total charges, a few
demographic flags and a ``churn`` column (Yes/No). Churn follows a logistic model with smooth
effects a linear model captures (add-ons, payment, the log of tenure) and effects only a tree
model finds (a jump in the first months, the fiber x month-to-month interaction, a charge band),
so neither model family is right on its own, as on real tables. The true churn probability of
each row is kept (``true_probability``, not written unless asked), so a benchmark can state the
best ROC AUC any model could reach on the same draw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["contract_customers"]

_ADD_ONS = ("online_security", "online_backup", "device_protection", "tech_support", "streaming_tv",
            "streaming_movies")


def contract_customers(n: int = 7000, seed: int = 0, *, with_truth: bool = False) -> pd.DataFrame:
    """``n`` customers (one row each, ids ``T000001``...); ``with_truth`` adds ``true_probability``."""
    rng = np.random.default_rng(seed)
    tenure = np.where(rng.random(n) < 0.12, rng.integers(1, 4, n), rng.integers(1, 73, n))
    contract = np.where(
        rng.random(n) < 0.25 + 0.6 * tenure / 72,
        np.where(rng.random(n) < 0.5, "One year", "Two year"), "Month-to-month")
    internet = rng.choice(["DSL", "Fiber optic", "No"], n, p=[0.34, 0.44, 0.22])
    has_net = internet != "No"
    add_ons = {name: np.where(has_net, np.where(rng.random(n) < 0.4, "Yes", "No"), "No internet service")
               for name in _ADD_ONS}
    n_add = sum((v == "Yes").astype(int) for v in add_ons.values())
    payment = rng.choice(["Electronic check", "Mailed check", "Bank transfer (automatic)",
                          "Credit card (automatic)"], n, p=[0.34, 0.23, 0.22, 0.21])
    senior = (rng.random(n) < 0.16).astype(int)
    partner = np.where(rng.random(n) < 0.48, "Yes", "No")
    dependents = np.where(rng.random(n) < 0.3, "Yes", "No")
    paperless = np.where(rng.random(n) < 0.59, "Yes", "No")
    monthly = (20 + 25 * (internet == "DSL") + 50 * (internet == "Fiber optic") + 5 * n_add
               + rng.normal(0, 3, n)).round(2)
    total = (tenure * monthly * rng.uniform(0.95, 1.05, n)).round(2)

    m2m, fiber = contract == "Month-to-month", internet == "Fiber optic"
    logit = (-1.1 + 1.1 * m2m - 0.6 * (contract == "Two year") + 0.5 * fiber + 0.45 * (payment == "Electronic check")
             + 0.3 * senior + 0.25 * (paperless == "Yes") - 0.2 * (partner == "Yes") - 0.15 * (dependents == "Yes")
             - 0.55 * np.log(tenure) - 0.45 * (add_ons["online_security"] == "Yes")
             - 0.4 * (add_ons["tech_support"] == "Yes") + 0.15 * (add_ons["streaming_tv"] == "Yes")
             # what a linear model on these columns cannot draw
             + 0.45 * (tenure <= 3) + 0.3 * (fiber & m2m) + 0.25 * ((monthly > 70) & (monthly < 90))
             - 0.5 * (~has_net))
    prob = 1 / (1 + np.exp(-logit))
    churn = rng.random(n) < prob
    df = pd.DataFrame({
        "customer_id": [f"T{i:06d}" for i in range(1, n + 1)], "gender": rng.choice(["Female", "Male"], n),
        "senior_citizen": senior, "partner": partner, "dependents": dependents, "tenure": tenure,
        "contract": contract, "internet_service": internet, **add_ons, "paperless_billing": paperless,
        "payment_method": payment, "monthly_charges": monthly, "total_charges": total,
        "churn": np.where(churn, "Yes", "No"),
    })
    if with_truth:
        df["true_probability"] = prob
    return df
