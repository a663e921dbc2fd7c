"""Closed-loop simulation of a recommender with simulated users (WeChat graph exploration).

`make_world` builds the semi-synthetic world from a real log, `ChoiceModel` is the user
model, `run_simulation` runs retrieve → rank → re-rank → feedback → updates over rounds; its
variants are `PipelineSpec`s (`PIPELINES`, or any spec over the graph retriever).
"""

from divrec.simulate.environment import ChoiceModel, choice_probabilities
from divrec.simulate.loop import (
    PIPELINES,
    SPACES,
    SimConfig,
    fit_retriever,
    pipeline_spec,
    run_simulation,
)
from divrec.simulate.world import World, make_world

__all__ = [
    "PIPELINES",
    "SPACES",
    "ChoiceModel",
    "SimConfig",
    "World",
    "choice_probabilities",
    "fit_retriever",
    "make_world",
    "pipeline_spec",
    "run_simulation",
]
