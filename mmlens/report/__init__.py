"""`mmlens report`: one self-contained HTML page with every analysis of one image and prompt."""

from mmlens.report.build import ReportSettings, write_report

__all__ = ["ReportSettings", "write_report"]
