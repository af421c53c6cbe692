"""The Flow-Director: a chat model that designs a workflow by editing the canvas, turn by turn.

>>> from flowsteer.director import Director, DirectorConfig              # doctest: +SKIP
>>> trajectory = Director(director_model).run("What is 12 + 30?", executor_model)  # doctest: +SKIP
"""

from flowsteer.director.config import ConstraintFactory, DirectorConfig
from flowsteer.director.loop import CanvasTarget, Director
from flowsteer.director.single import SingleTurnDesign, adesign_once, arun_single_turn, design_once
from flowsteer.director.trajectory import TokenRecord, Trajectory, TurnRecord

__all__ = [
    "CanvasTarget",
    "ConstraintFactory",
    "Director",
    "DirectorConfig",
    "SingleTurnDesign",
    "TokenRecord",
    "Trajectory",
    "TurnRecord",
    "adesign_once",
    "arun_single_turn",
    "design_once",
]
