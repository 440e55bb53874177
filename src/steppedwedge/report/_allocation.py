"""The trial's allocation: drawn from the configured seed, or an imported record verified.

An allocation record (:meth:`steppedwedge.Allocation.to_dict`, the report's
``allocation.json``) carries the seed, the options of the draw and a SHA-256 hash of its
inputs (design, cluster labels, covariates, constraints).  Importing it rebuilds the
allocation from the configured inputs with the record's seed and options, and accepts it
only when both the input hash and the assignment match the record: the report then shows
the allocation the trial really used, with the admissible set its randomisation test needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..exceptions import DesignError
from ..randomise import Allocation, randomise

if TYPE_CHECKING:  # pragma: no cover
    from .config import TrialConfig

__all__ = ["reproduce_allocation"]

#: Record fields compared to say which input differs when the hashes do not match.
_INPUTS = (
    ("periods", "the period grid"),
    ("design_matrix", "the design (wave start dates or clusters per wave)"),
    ("clusters", "the cluster labels"),
    ("strata", "the strata column"),
    ("balance_columns", "the balance covariates"),
    ("cutoff", "the balance cutoff"),
    ("covariates", "the covariate values"),
    ("options", "the randomisation options"),
)


def reproduce_allocation(config: TrialConfig) -> Allocation:
    """Randomise as configured, or reproduce and verify the imported record."""
    template = config.planned_design()
    clusters = config.clusters.rename(columns={config.cluster_column: "cluster"})
    kwargs: dict[str, Any] = {}
    if config.strata:
        kwargs["strata"] = config.strata
    if config.balance:
        kwargs["balance"] = list(config.balance)
        kwargs["cutoff"] = config.cutoff
    record = config.record
    if record is None:
        return randomise(template, clusters, rng=config.seed, **kwargs)
    options = record.get("options") or {}
    for key in ("alpha", "max_enumerate", "n_candidates"):
        if key in options:
            kwargs[key] = options[key]
    alloc = randomise(template, clusters, rng=int(record["seed"]), **kwargs)
    name = config.record_source or "the allocation record"
    if alloc.input_hash != record["input_hash"]:
        mine = alloc.to_dict()
        differ = [what for key, what in _INPUTS if key in record and record[key] != mine[key]]
        raise DesignError(
            f"{name} was made from other inputs than this configuration (input hash "
            f"{str(record['input_hash'])[:12]}, here {alloc.input_hash[:12]}): "
            + (", ".join(differ) if differ else "the inputs")
            + " differ; fix the configuration or remove `record`."
        )
    assignment = {str(c): int(s) for c, s in alloc.assignment.items()}
    recorded = {str(c): int(s) for c, s in dict(record["assignment"]).items()}
    if assignment != recorded:
        moved = sorted(c for c in recorded if assignment.get(c) != recorded[c])
        raise DesignError(
            f"{name}: its seed {record['seed']} does not reproduce its assignment "
            f"(made by steppedwedge {record.get('version', '?')}; clusters differing: "
            f"{', '.join(moved[:5])}{', ...' if len(moved) > 5 else ''})."
        )
    return alloc
