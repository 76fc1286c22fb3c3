"""Moved to `resnetkit.weights.pretrained`.

This old path is that same module, kept for user code."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("resnetkit.weights.pretrained")
