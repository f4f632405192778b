"""One module per toolchain behind one ``Target`` interface (see ``base.py``)."""

from edgevit.targets.base import ExportResult, IOSpec, Target, get_target, list_targets, register_target

__all__ = ["ExportResult", "IOSpec", "Target", "get_target", "list_targets", "register_target"]
