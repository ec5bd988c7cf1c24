"""Customer lifetime value: purchase models (BG/NBD, Pareto/NBD, MBG/NBD), the Gamma-Gamma spend
model and discounted CLV, fitted and scored on weighted unique customer histories."""

from crmlab.pipelines import lazy_exports

_EXPORTS = {
    "SPEND_RULES": "crmlab.clv.models",
    "TRANSACTION_KINDS": "crmlab.clv.models",
    "UNITS_PER_MONTH": "crmlab.clv.models",
    "SpendModel": "crmlab.clv.models",
    "TransactionModel": "crmlab.clv.models",
    "customer_lifetime_value": "crmlab.clv.models",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
