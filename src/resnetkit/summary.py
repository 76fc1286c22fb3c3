"""Moved to `resnetkit.models.summary`.

This old path is that same module, kept for user code."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("resnetkit.models.summary")
