"""Experiment files: an entry's `constraints` table (business rules, group-fairness floor),
its checks before training and its resolution against the data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from divrec.data import Interactions
from divrec.experiment import ExperimentError, load_experiment, run_experiment
from divrec.experiment.runner import entry_constraints

ENTRY = """\
[experiment]
name = "rules"
dataset = "{csv}"
protocol = "random"
ks = [5]
metrics = ["ndcg", "arp"]
seeds = 1
baseline = "ials"
sanity = false
tuning = {method = "grid", trials = 1, objective = "ndcg@5"}

[[entries]]
name = "ials"
pipeline = {retriever = {name = "ials", params = {factors = 8, iterations = 2}}}

[[entries]]
name = "fair"
constraints = @RULES@
[entries.pipeline]
retriever = {name = "ials", params = {factors = 8, iterations = 2}}
reranker = {name = "fair", params = {p = 0.3}}
n_candidates = 30
"""


def _file(write_exp, rules: str):
    text = ENTRY.replace("@RULES@", rules).replace("{", "{{").replace("}", "}}")
    return write_exp(text.replace("{{csv}}", "{csv}"))  # the writer formats {csv} only


def test_parsed_and_kept_in_the_entry_json(write_exp):
    config = load_experiment(
        _file(
            write_exp,
            '{exclude = [3], group = "popularity", protected = "tail", '
            "min_share = 0.4, best_effort = true}",
        )  # fmt: skip
    )
    entry = config.entry("fair")
    assert entry.constraints == {
        "exclude": [3],
        "group": "popularity",
        "protected": "tail",
        "min_share": 0.4,
        "best_effort": True,
    }
    assert entry.to_json()["constraints"] == entry.constraints


@pytest.mark.parametrize(
    "rules, match",
    [
        ("{foo = 1}", "unknown key 'entries\\[1\\].constraints.foo'"),
        ("{min_count = {a = 3}, max_count = {a = 1}}", "min_count.a' = 3 exceeds"),
        ('{group = "popularity", min_share = 0.5}', "missing key .*constraints.protected'"),
        ('{group = "provider", protected = "x", min_share = 0.5}', "constraints.group' must be"),
        ('{group = "popularity", protected = "tail", min_share = 1.5}', "min_share' must be in"),
        ("{boosts = {1 = nan}}", "boosts.1' must be"),
        ('{pins = {1 = 0, 2 = 0}}', "pins one position twice"),
        ("{best_effort = 1}", "best_effort' must be true or false"),
    ],
)  # fmt: skip
def test_bad_constraints_are_one_line(write_exp, rules, match):
    with pytest.raises(ExperimentError, match=match):
        load_experiment(_file(write_exp, rules))


def test_names_resolved_against_the_data():
    data = Interactions.from_arrays(
        np.array([0, 0, 1, 2]), np.array([10, 11, 11, 12])
    ).with_item_side_info(
        item_categories=sp.csr_matrix(np.array([[1, 0], [0, 1], [0, 1]])),
        category_names=("Drama", "Horror"),
    )
    from divrec.experiment.config import Entry
    from divrec.pipeline.spec import PipelineSpec

    spec = PipelineSpec.from_dict({"retriever": "popularity"})

    def rules(raw):
        return entry_constraints(
            Entry("e", spec, constraints=raw), data, "X: 'entries[0].constraints"
        )

    c = rules(
        {"max_count": {"Horror": 1}, "exclude": [12], "pins": {"10": 0}, "boosts": {"11": 0.5}}
    )
    assert c.max_count == {1: 1}
    assert c.exclude.tolist() == [2]
    assert c.pins == {0: 0} and c.boosts == {1: 0.5}
    c = rules({"group": "popularity", "protected": "tail", "min_share": 0.5})
    assert c.protected == 1 and c.group_of.tolist() == [1, 0, 1]
    with pytest.raises(ExperimentError, match="constraints.max_count.Comedy': unknown category"):
        rules({"max_count": {"Comedy": 1}})
    with pytest.raises(ExperimentError, match="constraints.exclude': unknown item id 99"):
        rules({"exclude": [99]})
    with pytest.raises(ExperimentError, match="constraints.protected': unknown group 'x'"):
        rules({"group": "popularity", "protected": "x", "min_share": 0.5})
    with pytest.raises(ExperimentError, match="constraints.group': .*no item features"):
        rules({"group": "feature:0", "protected": "yes", "min_share": 0.5})


def test_unknown_item_fails_before_training(write_exp, tmp_path):
    config = load_experiment(_file(write_exp, "{exclude = [987654]}"))
    computed: list[str] = []
    with pytest.raises(ExperimentError, match="unknown item id 987654"):
        run_experiment(config, tmp_path / "out", progress=False, on_unit=computed.append)
    assert computed == []


def test_run_reports_the_violation_share(write_exp, tmp_path):
    config = load_experiment(
        _file(
            write_exp,
            '{group = "popularity", protected = "tail", min_share = 0.4, best_effort = true}',
        )  # fmt: skip
    )
    (res,) = run_experiment(config, tmp_path / "out", progress=False)
    fair = next(e for e in res["entries"] if e["name"] == "fair")
    share = fair["system"]["constraint_violations@5"]
    assert all(0.0 <= v <= 1.0 for v in share)


def test_pareto_front_reads_miscalibration_as_lower_is_better():
    from divrec.experiment.report import pareto_front

    def entry(name, acc, mis):
        return {
            "name": name,
            "summary": {"precision@10": {"mean": acc}, "miscalibration@10": {"mean": mis}},
        }

    results = {"entries": [entry("a", 0.30, 0.7), entry("b", 0.28, 0.3), entry("c", 0.27, 0.5)]}
    # c is beaten by b on both (lower precision, higher miscalibration); a and b trade off
    assert pareto_front(results, "precision@10", "miscalibration@10") == ["a", "b"]
