"""Parity metrics, the single tolerance table, and artifact-folder verification."""

from edgevit.verify.parity import ParityReport, verify_dir
from edgevit.verify.tolerances import TOLERANCES, Tolerance, tolerance_for

__all__ = ["ParityReport", "verify_dir", "TOLERANCES", "Tolerance", "tolerance_for"]
