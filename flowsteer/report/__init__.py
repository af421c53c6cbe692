"""Self-contained HTML reports of eval and training runs (``flowsteer report RUN_DIR``).

>>> from flowsteer.report import write_report          # doctest: +SKIP
>>> write_report("runs/gsm8k-eval")                    # doctest: +SKIP
PosixPath('runs/gsm8k-eval/report.html')

The page has inline CSS, base64 PNG images and inline SVG workflow diagrams, and no scripts or
URLs: it opens offline. :func:`detect_run` tells an eval folder (``results.jsonl``) from a training
folder (``metrics.jsonl``/``checkpoints/``).
"""

from flowsteer.report.diagram import workflow_svg
from flowsteer.report.html import REPORT_FILE, RunKind, build_report, detect_run, write_report

__all__ = ["REPORT_FILE", "RunKind", "build_report", "detect_run", "write_report", "workflow_svg"]
