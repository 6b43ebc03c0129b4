"""`mmlens report`: one self-contained HTML page with every analysis of one image and prompt."""

from mmlens.outputs import check_out
from mmlens.report.build import ReportSettings, write_report

__all__ = ["ReportSettings", "check_out", "write_report"]
