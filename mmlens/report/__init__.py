"""`mmlens report`: one self-contained HTML page with every analysis of one image and prompt."""

from mmlens.report.build import ReportSettings, check_out, write_report

__all__ = ["ReportSettings", "check_out", "write_report"]
