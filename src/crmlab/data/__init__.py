"""Data: loading, the embedded CDNOW log, the synthetic CRM generator and cleaning."""

from crmlab.data.io import Tables, load_cdnow, load_cdnow_sample_summary, load_tables, read_table

__all__ = ["Tables", "load_cdnow", "load_cdnow_sample_summary", "load_tables", "read_table"]
