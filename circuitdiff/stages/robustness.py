"""Stage ``robustness``: per-model drop statistics from retained %, the compression ratio and the
slope between them (circuitdiff.analysis.robustness), on the models that perform the task.

The bootstrap's seed is the authors' (docs/authors-code.md §3.7: numpy default_rng(42) per statistic),
so the paper preset reproduces their intervals exactly; the alignment bootstrap uses the spec's seed.
"""

from __future__ import annotations

from ..analysis import robustness as robustness_mod
from ..metrics import METRICS
from ..result import ModelRobustness, Performance, Robustness
from ..vocabulary import ROLES
from .context import RunContext
from .influence import Influences

ROBUSTNESS_SEED = robustness_mod.SEED


def robustness(ctx: RunContext, infl: Influences, perf: dict[str, Performance]) -> Robustness:
    """Drops from retained % in canonical component order. A model that does not perform the task
    has no retained % worth a percentage (analysis.performance), so its statistics are null, with a note."""
    scans, n_boot = infl.scans, ctx.spec.bootstrap
    t_params, s_params = ctx.teacher.n_params, ctx.student.n_params
    c = robustness_mod.compression_ratio(t_params, s_params)
    metric = scans["teacher"].metric
    if METRICS[metric].retained is None:
        return Robustness(teacher=None, student=None, compression_ratio=c, delta_mean_drop=None,
                          delta_mean_drop_ci95=None, slope_mean=None, delta_severity=None, slope_severity=None,
                          note=f"the metric {metric} ({METRICS[metric].label}) has no retained %, so there are no "
                               "drops: robustness is measured on logit_diff, answer_prob or answer_logprob")
    ok = {r: bool(perf[r].performs_task) and None not in scans[r].retained().values() for r in ROLES}
    drops = {r: robustness_mod.drops_from_retained(list(scans[r].retained().values())) for r in ROLES if ok[r]}
    if ok["teacher"] and ok["student"]:
        st = robustness_mod.robustness_stats(drops["teacher"], drops["student"], t_params, s_params,
                                             n_boot=n_boot, seed=ROBUSTNESS_SEED)
        return Robustness(
            teacher=_model_robustness(st.teacher), student=_model_robustness(st.student), compression_ratio=c,
            delta_mean_drop=st.delta_mean_drop, delta_mean_drop_ci95=_pair(st.delta_mean_drop_ci95),
            slope_mean=st.slope_mean, slope_mean_ci95=_pair(st.slope_mean_ci95), delta_severity=st.delta_severity,
            slope_severity=st.slope_severity, delta_mean_drop_bootstrap_mean=st.delta_mean_drop_bootstrap_mean,
        )
    missing = [r for r in ROLES if not ok[r]]
    return Robustness(
        **{r: _model_robustness(robustness_mod.model_robustness(drops[r], n_boot, ROBUSTNESS_SEED)) if ok[r] else None
           for r in ROLES},
        compression_ratio=c, delta_mean_drop=None, delta_mean_drop_ci95=None, slope_mean=None, delta_severity=None,
        slope_severity=None,
        note=f"{' and '.join(missing)} does not perform the task (clean logit difference not above 0): "
             "drops in % of the clean logit difference are undefined or noise",
    )


def _model_robustness(m: robustness_mod.ModelRobustnessStats) -> ModelRobustness:
    return ModelRobustness(
        n_components=m.n_components, mean_drop=m.mean_drop, mean_drop_ci95=_pair(m.mean_drop_ci95),
        median_drop=m.median_drop, max_drop=m.max_drop, severity=m.severity, worst5_mean=m.worst5_mean, gini=m.gini,
    )


def _pair(ci) -> list[float] | None:
    return None if ci is None else [float(ci[0]), float(ci[1])]
