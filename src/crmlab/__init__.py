"""crmlab: customer models from CRM data (churn, CLV, segmentation, sales forecasting)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crmlab")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
