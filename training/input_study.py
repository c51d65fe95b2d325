"""Version 5's comparison of input geometries (docs/model-card.md, "Version 5: protocol addendum").

Over the features of ``training.inputs`` (one corpus per geometry, the same clips, copies and motion
rows): nested leave-one-source-out of each geometry and of the procedure that chooses among the
eligible ones inside each outer fold, LODO both ways, the paired changes against the incumbent, and the
rule that picks the geometry to ship (a grouped 5-fold OOF over D, nothing else).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from training.augment import SUITE
from training.dataset import BUS_SOURCE, ClipItem, load_bus, load_manifest
from training.extract import CLEAN
from training.inputs import (
    CROP,
    CROP_128,
    SIZE,
    SIZE_128,
    WIDE,
    Feats,
    InputJob,
    cache_key,
    extract_inputs,
    for_geometry,
)
from training.pipeline import NETWORK_FILE, _plain, write_model
from training.protocol import (
    BOOTSTRAP,
    FINAL_FOLDS,
    INNER_FOLDS,
    Corpus,
    Fitter,
    FloatArray,
    FoldOutput,
    IntArray,
    Variant,
    _bootstrap_members,
    _empty,
    auc,
    final_sources,
    inner_rules,
    lodo,
    report,
    suite_copies,
)

SETTING = Variant("mean", True)  # version 4's shipped variant: the training setting is not varied
INCUMBENT = "c160"
ELIGIBLE = ("c160", "w200")  # within the cost limit (x3 was dropped before any figure: the addendum)
PROCEDURE = "procedure"
# the runtime's ``network.size`` and ``network.long`` of each shippable geometry
SHAPE = {"c160": (SIZE, CROP), "w200": (SIZE, WIDE), "s128": (SIZE_128, CROP_128)}
# Reduced before any figure (docs/model-card.md, the addendum's "Deviations"): two geometries, one
# training copy per clip, the first BUS_CLIPS Bus clips in sha256 order.
GEOMETRIES = ("c160", "w200")
SURV_TRANSFORMS = ("dark_noise", "pan_shake", "aug0")  # the reduced suite and one training copy
BUS_TRANSFORMS = ("aug0",)
BUS_CLIPS = 280
STUDY_FILE = "kuzet-fight.inputs.json"
Progress = Callable[[str], None]


def pick(inner_auc: dict[str, float], eligible: Sequence[str] = ELIGIBLE) -> str:
    """The eligible geometry with the higher inner AUC; the incumbent on an exact tie."""
    return max(eligible, key=lambda g: (inner_auc[g], g == INCUMBENT))


def _inner(corpus: Corpus, fixed: IntArray, evaluable: IntArray, folds: int, seed: int) -> tuple[float, float]:
    rules = inner_rules(corpus, fixed=fixed, evaluable=evaluable, folds=folds, seed=seed, variants=[SETTING])
    return rules.inner_auc[SETTING.name], rules.thresholds[SETTING.name]


def nested(corpora: dict[str, Corpus], seed: int, say: Progress) -> dict[str, Any]:
    """Each geometry and the procedure, one outer fold per development source."""
    base = corpora[INCUMBENT]
    dev, bus = base.where("dev"), base.where("bus")
    copies = suite_copies(base)
    geoms = list(corpora)
    out = _empty(base, [PROCEDURE, *geoms], copies)
    chosen: dict[str, str] = {}
    inner_aucs: dict[str, dict[str, float]] = {}
    sources = sorted(set(base.groups[dev].tolist()))
    for k, src in enumerate(sources):
        test = dev[base.groups[dev] == src]
        train = dev[base.groups[dev] != src]
        inner = {g: _inner(corpora[g], bus, train, INNER_FOLDS, seed + k) for g in geoms}
        choice = pick({g: a for g, (a, _) in inner.items()}, geoms)
        for g in geoms:
            model = Fitter(corpora[g], np.concatenate([bus, train])).fit(SETTING)
            for c in copies:
                s = model.score(corpora[g], test, c)
                for key in [g, *([PROCEDURE] if g == choice else [])]:
                    out.scores[key][c][test] = s
                    out.decided[key][c][test] = s >= inner[g][1]
        chosen[src] = choice
        inner_aucs[src] = {g: a for g, (a, _) in inner.items()}
        say(f"nested LOSO {k + 1}/{len(sources)}: chose {choice}")
    figures = report(base, out, dev, seed)
    return {
        "folds": len(sources),
        "chosen_per_fold": chosen,
        "inner_auc_per_fold": inner_aucs,
        "figures": figures,
        "paired_change": {g: paired_change(base, out, dev, g, seed) for g in geoms if g != INCUMBENT},
    }


def paired_change(corpus: Corpus, out: FoldOutput, idx: IntArray, geometry: str, seed: int) -> dict[str, Any]:
    """AUC of ``geometry`` minus the incumbent's on the same held-out clips, per copy, paired intervals."""
    y, members = corpus.y[idx], _bootstrap_members(corpus.groups[idx])
    res: dict[str, Any] = {}
    for c in suite_copies(corpus):
        a: FloatArray = out.scores[geometry][c][idx]
        b: FloatArray = out.scores[INCUMBENT][c][idx]
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(BOOTSTRAP):
            take = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
            if y[take].min() != y[take].max():
                draws.append(auc(y[take], a[take]) - auc(y[take], b[take]))
        res[c] = {
            "auc_change": auc(y, a) - auc(y, b),
            "auc_change_ci": [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))],
        }
    return res


def shipping_rule(corpora: dict[str, Corpus], seed: int) -> dict[str, Any]:
    """The addendum's rule: grouped 5-fold OOF over all of D (B in every training fold), clean AUC."""
    base = corpora[INCUMBENT]
    dev, bus = base.where("dev"), base.where("bus")
    inner = {g: _inner(corpora[g], bus, dev, FINAL_FOLDS, seed) for g in corpora}
    oof = {g: a for g, (a, _) in inner.items()}
    return {"oof_auc": oof, "thresholds": {g: t for g, (_, t) in inner.items()}, "chosen": pick(oof, list(corpora))}


def study(corpora: dict[str, Corpus], seed: int, say: Progress) -> dict[str, Any]:
    """Everything the addendum asks for, in one dictionary (private keys dropped by the writer)."""
    res: dict[str, Any] = {"setting": SETTING.name, "geometries": list(corpora), "eligible": list(corpora)}
    res["nested_loso"] = nested(corpora, seed, say)
    res["lodo"] = {}
    for g, corpus in corpora.items():
        full = lodo(corpus, seed, say, variants=[SETTING])
        res["lodo"][g] = {
            "a_bus_to_surv_fight": full["a_bus_to_surv_fight"]["figures"][SETTING.name],
            "b_surv_fight_to_bus": full["b_surv_fight_to_bus"]["figures"][SETTING.name],
        }
    res["rule"] = shipping_rule(corpora, seed)
    say(f"rule: {res['rule']['chosen']}")
    return res


def corpora_of(
    surv: list[ClipItem],
    bus: list[ClipItem],
    feats: list[Feats],
    held: set[str],
    geometries: Sequence[str] = GEOMETRIES,
) -> dict[str, Corpus]:
    """One corpus per geometry over the same clips (surv-fight first, then the Bus clips)."""
    items = [*surv, *bus]
    part_of = ["bus" if not it.evaluable else ("final" if it.source in held else "dev") for it in items]
    labels, groups = [it.label for it in items], [it.source for it in items]
    return {
        g: Corpus.build(labels, groups, part_of, [for_geometry(f, g, SURV_TRANSFORMS) for f in feats])
        for g in geometries
    }


def bus_in_order(bus_dir: Path) -> list[ClipItem]:
    """The Bus clips in the sha256 order of their names (the order of extraction and of any cut)."""
    return sorted(load_bus(bus_dir), key=lambda it: hashlib.sha256(it.clip.encode()).hexdigest())


def run(
    data_dir: Path,
    bus_dir: Path,
    out_dir: Path,
    *,
    cache_dir: Path,
    bus_clips: int | None = BUS_CLIPS,
    seed: int = 0,
    ship: bool = False,
    geometries: Sequence[str] = GEOMETRIES,
    study_name: str = STUDY_FILE,
    say: Progress = print,
) -> dict[str, Any]:
    """The comparison (``kuzet-fight.inputs.json`` in ``out_dir``); with ``ship``, when the rule chose a
    geometry other than the incumbent, the one look at F and version 5's artefacts."""
    network = out_dir / NETWORK_FILE
    cache = cache_dir / cache_key(network)
    surv = load_manifest(data_dir)
    held = final_sources([it.source for it in surv])
    if not ship:  # F's features are made, and F enters the corpus, only for its one look
        surv = [it for it in surv if it.source not in held]
    bus = bus_in_order(bus_dir)[:bus_clips]
    geoms = tuple(geometries)
    jobs = [InputJob(it.path, network, cache, SURV_TRANSFORMS, geoms) for it in surv]
    jobs += [InputJob(it.path, network, cache, BUS_TRANSFORMS, geoms) for it in bus]
    feats = extract_inputs(jobs, say)
    corpora = corpora_of(surv, bus, feats, held, geoms)
    study_file = out_dir / study_name
    with threadpool_limits(limits=1):
        if not ship:
            res: dict[str, Any] = study(corpora, seed, say)
            res["bus_clips"] = len(bus)
            out_dir.mkdir(parents=True, exist_ok=True)
            study_file.write_text(json.dumps(_plain(res), indent=1) + "\n")
            return res
        # --ship: the comparison already ran (its file); the rule is re-run on the same D (deterministic)
        # for its unrounded threshold, then F is looked at once, for the chosen geometry only
        res = json.loads(study_file.read_text())
        if res["bus_clips"] != len(bus):
            raise ValueError(f"{study_file} was made with {res['bus_clips']} Bus clips, not {len(bus)}")
        rule = shipping_rule(corpora, seed)
        if rule["chosen"] != res["rule"]["chosen"]:
            raise ValueError("the rule chose differently from the comparison's run")
        chosen = rule["chosen"]
        if chosen == INCUMBENT:
            say(f"the rule kept {INCUMBENT}: nothing to ship, F not looked at")
            return res
        res["final_test"] = final_look(corpora[chosen], rule["thresholds"][chosen], seed)
        say("final test sources scored (once)")
        study_file.write_text(json.dumps(_plain(res), indent=1) + "\n")
    ship_version(
        corpora[chosen],
        chosen,
        res=res,
        network=network,
        out_dir=out_dir,
        parts=[("surv-fight", surv), (BUS_SOURCE, bus)],
        held=held,
        seed=seed,
    )
    return res


def final_look(corpus: Corpus, threshold: float, seed: int) -> dict[str, Any]:
    """F scored once by the setting fitted on B + D, at the threshold the rule set on D."""
    fin, dev, bus = corpus.where("final"), corpus.where("dev"), corpus.where("bus")
    model = Fitter(corpus, np.concatenate([bus, dev])).fit(SETTING)
    out = _empty(corpus, ["chosen"], suite_copies(corpus))
    for c in suite_copies(corpus):
        out.scores["chosen"][c][fin] = model.score(corpus, fin, c)
        out.decided["chosen"][c][fin] = out.scores["chosen"][c][fin] >= threshold
    figs: dict[str, Any] = report(corpus, out, fin, seed)["chosen"]
    return figs


def ship_version(
    corpus: Corpus,
    geometry: str,
    *,
    res: dict[str, Any],
    network: Path,
    out_dir: Path,
    parts: list[tuple[str, list[ClipItem]]],
    held: set[str],
    seed: int,
) -> dict[str, Any]:
    """Version 5: the setting refitted on B + D + F with the chosen geometry, its threshold by the rule."""
    bus, shipped = corpus.where("bus"), corpus.where("dev", "final")
    with threadpool_limits(limits=1):
        rules = inner_rules(corpus, fixed=bus, evaluable=shipped, folds=FINAL_FOLDS, seed=seed, variants=[SETTING])
        fitted = Fitter(corpus, np.concatenate([bus, shipped])).fit(SETTING)
    nested_res = res["nested_loso"]
    validation = {
        "protocol": "docs/model-card.md, version 5 (the version-4 protocol with the input-geometry addendum)",
        "chosen": SETTING.name,
        "geometry": geometry,
        "geometries_compared": list(res["geometries"]),
        "variants_compared": 1,
        "variants": [SETTING.name],
        "motion_stage": {"keep": True, "augmented": {"keep": True}, "note": "version 4's rule, not re-run"},
        "nested_loso": {
            "chosen_per_fold": nested_res["chosen_per_fold"],
            "clean": nested_res["figures"][geometry][CLEAN],
        },
        "suite": {c: nested_res["figures"][geometry].get(c) for c in SURV_TRANSFORMS if c in SUITE},
        "rule": res["rule"],
        "final_test": res.get("final_test"),
    }
    return write_model(
        out_dir,
        network,
        version="5",
        size=SHAPE[geometry][0],
        long=SHAPE[geometry][1],
        variant=SETTING,
        fitted=fitted,
        threshold=rules.thresholds[SETTING.name],
        calibration_max=rules.calibration_max[SETTING.name],
        validation=validation,
        parts=parts,
        held=held,
        seed=seed,
        metrics=res,
    )
