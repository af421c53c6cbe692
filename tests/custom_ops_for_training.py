"""User operators a training config names in ``data.custom_operators`` (tests/test_training_custom_ops.py).

Each run appends its operator name to the file in ``$FLOWSTEER_CUSTOM_OPS_LOG``.
"""

from __future__ import annotations

import os

from flowsteer.operators import OperatorCall, register_operator


def _logged(name: str):
    def run(call: OperatorCall) -> str:
        with open(os.environ["FLOWSTEER_CUSTOM_OPS_LOG"], "a") as log:
            log.write(name + "\n")
        return call.input if isinstance(call.input, str) else " ".join(call.input or ())

    return run


for _name in ("Estimate", "Recount", "Tally"):
    register_operator(_logged(_name), name=_name, role="solving", description=f"{_name} the quantities")
