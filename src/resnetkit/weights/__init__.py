"""Weights and what travels with them: weight files (`io`), run checkpoints (`checkpoint`), the
catalogue of pretrained and bundled weights as plain data (`catalogue`), the verified download
cache (`download`), state-dict adapters (`adapt`), loading weights into a model and fine-tuning
(`pretrained`), the evaluation preprocessing they were published with (`transforms`) and
`create_model` (`factory`).

The names of `io` are re-exported here: `resnetkit.weights` was that module before the package
existed, and user code imports them from it.
"""

from .io import (
    WeightsError,
    classifier_keys,
    load_weights,
    read_metadata,
    read_state_dict,
    save_weights,
    unpickling_reason,
)

__all__ = [
    "WeightsError",
    "classifier_keys",
    "load_weights",
    "read_metadata",
    "read_state_dict",
    "save_weights",
    "unpickling_reason",
]
