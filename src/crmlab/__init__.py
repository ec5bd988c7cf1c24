"""crmlab: customer models from CRM data (churn, CLV, segmentation, sales forecasting).

The scoring API is importable from the top level (loaded on first use, so ``import crmlab`` stays
light)::

    from crmlab import score_customers, load_config
    scores = score_customers(load_config("configs"))          # every trained customer model
    from crmlab import score_clv, score_churn, score_segmentation, score_forecast
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("crmlab")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

from crmlab.pipelines import records as _records  # noqa: E402 - light: no crmlab import

_LAZY = {
    "load_config": "crmlab.config",
    "load_bundle": "crmlab.export",
    "score_customers": "crmlab.scoring",
    "write_scores": "crmlab.scoring",
    # each pipeline's scorer, score_<pipeline>, from the pipeline records
    **{ref.rpartition(":")[2]: ref.partition(":")[0] for ref in (p.scorer for p in _records())},
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'crmlab' has no attribute {name!r}")
