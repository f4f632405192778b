"""One module per toolchain behind one ``Target`` interface (see ``base.py``)."""

from edgevit.targets.base import ExportResult, IOSpec, RuntimeSpec, Target, get_target, list_targets, register_target

__all__ = ["ExportResult", "IOSpec", "RuntimeSpec", "Target", "get_target", "list_targets", "register_target"]
