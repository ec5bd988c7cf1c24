"""Customer lifetime value: purchase models (BG/NBD, Pareto/NBD, MBG/NBD), the Gamma-Gamma spend
model and discounted CLV, fitted and scored on weighted unique customer histories."""

from crmlab.clv.models import (
    SPEND_RULES,
    TRANSACTION_KINDS,
    UNITS_PER_MONTH,
    SpendModel,
    TransactionModel,
    customer_lifetime_value,
)

__all__ = [
    "SPEND_RULES",
    "TRANSACTION_KINDS",
    "UNITS_PER_MONTH",
    "SpendModel",
    "TransactionModel",
    "customer_lifetime_value",
]
