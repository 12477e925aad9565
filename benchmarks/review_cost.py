"""Review cost: human answers spent and label errors left, per decision rule.

Real labels of a shared dataset are the truth; simulated annotators answer it with the
per-group error rates of `annotation.simulate.ERROR_TABLES` (a pool of six: four careful,
one careless, one colour-blind; two per image, pairs rotated), gold images mixed into
every queue, careful tie-breakers. The same answers are decided by:

  majority+tiebreak   the paper's rule: two equal answers decide, any difference sends the
                      whole image to a tie-breaker whose answer decides
  crowdkit-br-ds      Crowd-Kit's BinaryRelevance(DawidSkene) over the two answers
  aggregation         ifa's per-group EM (annotation/aggregation.py), no tie-break
  agg+tiebreak-any    any difference -> a tie-breaker answers all eight groups
  agg+tiebreak-uncertain  only groups whose posterior is below --min-confidence

Reported: label-level precision, recall and errors (false + missed labels) against the
truth over the round's images, groups a tie-breaker answered, human group answers per
image. Offline (no server): the decisions are the library's own functions on arrays.
`--live` runs the same round through a real Label Studio beside it (review_live.py);
`--clicks N` measures check vs blind mode in a browser on the real page (review_clicks.py).

    python -m benchmarks.review_cost --data ../shared/data/myntra-products --images 600
    python -m benchmarks.review_cost --live --data ../shared/data/myntra-products --seeds 1
    python -m benchmarks.review_cost --clicks 30 --data ../shared/data/myntra-products
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ifa.annotation import aggregation, simulate
from ifa.taxonomy import Taxonomy

GROUP_COLUMNS = ("category", "color", "gender", "material", "neckline", "pattern", "sleeve", "style")
POOL = ("careful", "careful", "careful", "careful", "careless", "colour-blind")


@dataclass
class Outcome:
    rule: str
    precision: float
    recall: float
    errors: int
    tiebreak_images: int
    tiebreak_groups: int
    group_answers_per_image: float
    seconds: float


def read_truth(folder: Path, taxonomy: Taxonomy) -> tuple[list[str], list[tuple[int, ...]]]:
    """(image ids, label ids) from a shared dataset's labels.csv (imat_<group> columns,
    names joined by |; a single-label group keeps its first name)."""
    names = {g.name: {taxonomy.labels[i].name: i for i in g.label_ids} for g in taxonomy.groups}
    single = {g.name for g in taxonomy.groups if g.single}
    ids, labels = [], []
    with open(folder / "labels.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            mine = []
            for group in GROUP_COLUMNS:
                values = [v for v in (row.get(f"imat_{group}") or "").split("|") if v in names[group]]
                mine += [names[group][v] for v in (values[:1] if group in single else values)]
            if mine:
                ids.append(row.get("image_id") or row["id"])
                labels.append(tuple(sorted(set(mine))))
    return ids, labels


def simulate_round(truth, n_gold: int, taxonomy: Taxonomy, seed: int):
    """Answers of the pool: (rows [(item, worker, labels)], pairs {item: (w1, w2)}).
    Items 0..n-1 are the round's images, the last n_gold are gold."""
    rng = np.random.default_rng(seed)
    n = len(truth) - n_gold
    pairs_all = [(a, b) for a in range(len(POOL)) for b in range(a + 1, len(POOL))]
    order = rng.permutation(len(pairs_all))
    pairs = {i: pairs_all[order[i % len(pairs_all)]] for i in range(n)}
    rows = []
    for i, (a, b) in pairs.items():
        for w in (a, b):
            rows.append((i, w, simulate.slip(truth[i], taxonomy, simulate.ERROR_TABLES[POOL[w]], rng)))
    per_worker = max(1, round(0.05 * 2 * n / len(POOL)))  # gold 5% of each queue
    for w in range(len(POOL)):
        for g in rng.choice(n_gold, size=min(per_worker, n_gold), replace=False):
            rows.append((n + int(g), w, simulate.slip(truth[n + int(g)], taxonomy, simulate.ERROR_TABLES[POOL[w]], rng)))
    return rows, pairs


def to_matrix(label_sets, taxonomy: Taxonomy) -> np.ndarray:
    cols = {int(x): k for k, x in enumerate(taxonomy.label_ids)}
    m = np.zeros((len(label_sets), len(cols)), bool)
    for r, labels in enumerate(label_sets):
        m[r, [cols[int(x)] for x in labels]] = True
    return m


def score(decided: np.ndarray, truth: np.ndarray) -> tuple[float, float, int]:
    tp = int((decided & truth).sum())
    fp = int((decided & ~truth).sum())
    fn = int((~decided & truth).sum())
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1), fp + fn


def run(data: Path, images: int, gold_rate: float, min_confidence: float, seed: int) -> dict:
    tax = Taxonomy.default()
    ids, labels = read_truth(data, tax)
    rng = np.random.default_rng(seed)
    n_gold = max(1, round(gold_rate * images))
    pick = rng.choice(len(ids), size=images + n_gold, replace=False)
    truth = [labels[k] for k in pick]
    T = to_matrix(truth, tax)
    rows, pairs = simulate_round(truth, n_gold, tax, seed)
    groups = aggregation.group_columns(tax)
    V = to_matrix([r[2] for r in rows], tax)
    items = np.array([r[0] for r in rows])
    workers = np.array([r[1] for r in rows])
    gold_mask = np.zeros(len(truth), bool)
    gold_mask[images:] = True
    tb_rng = np.random.default_rng(seed + 1)
    careful = simulate.ERROR_TABLES["careful"]
    out = []

    t0 = time.process_time()
    agg = aggregation.aggregate(V, items, workers, len(truth), len(POOL), groups, gold=T, gold_mask=gold_mask)
    t_agg = time.process_time() - t0
    answer = {(i, w): V[k] for k, (i, w) in enumerate(zip(items, workers))}
    differ = [i for i, (a, b) in pairs.items() if (answer[i, a] != answer[i, b]).any()]

    # majority + tie-break: the tie-breaker re-answers every group of every disputed image
    tb_full = {i: to_matrix([simulate.slip(truth[i], tax, careful, tb_rng)], tax)[0] for i in differ}
    maj = np.array([tb_full[i] if i in tb_full else answer[i, pairs[i][0]] for i in range(images)])
    out.append(_outcome("majority+tiebreak", maj, T[:images], len(differ), 8 * len(differ), images, 0.0))
    out.append(_crowdkit(rows, images, tax, T[:images]))
    out.append(_outcome("aggregation", agg.decision[:images], T[:images], 0, 0, images, t_agg))
    anyrule = agg.decision[:images].copy()
    for i in differ:
        anyrule[i] = tb_full[i]
    out.append(_outcome("agg+tiebreak-any", anyrule, T[:images], len(differ), 8 * len(differ), images, t_agg))
    out.append(_uncertain(agg, truth, groups, images, T, tax, min_confidence, seed, t_agg))
    return {"data": str(data), "images": images, "gold": n_gold, "pool": list(POOL), "min_confidence": min_confidence,
            "outcomes": [asdict(o) for o in out],
            "reliability": {g: {"estimate": np.round(r.estimate, 3).tolist(), "low": np.round(r.low, 3).tolist(),
                                "high": np.round(r.high, 3).tolist()} for g, r in agg.reliability.items()}}


def _uncertain(agg, truth, groups, images, T, tax, min_confidence, seed, t_agg) -> Outcome:
    """A tie-breaker answers only the groups whose posterior is below min_confidence."""
    rng = np.random.default_rng(seed + 2)
    careful = simulate.ERROR_TABLES["careful"]
    final = agg.decision[:images].copy()
    asked = agg.confidence[:images] < min_confidence
    for i in np.flatnonzero(asked.any(1)):
        names = [groups[k].name for k in np.flatnonzero(asked[i])]
        got = to_matrix([simulate.slip(truth[i], tax, careful, rng, groups=names)], tax)[0]
        for k in np.flatnonzero(asked[i]):
            final[i, groups[k].columns] = got[groups[k].columns]
    return _outcome("agg+tiebreak-uncertain", final, T[:images], int(asked.any(1).sum()), int(asked.sum()),
                    images, t_agg)


def _crowdkit(rows, images, tax, T) -> Outcome:
    import pandas as pd
    from crowdkit.aggregation import BinaryRelevance, DawidSkene

    df = pd.DataFrame([(i, w, [str(x) for x in labels]) for i, w, labels in rows], columns=["task", "worker", "label"])
    t0 = time.process_time()
    result = BinaryRelevance(DawidSkene(n_iter=100)).fit_predict(df)
    seconds = time.process_time() - t0
    decided = to_matrix([[int(x) for x in result.get(i, [])] for i in range(images)], tax)
    return _outcome("crowdkit-br-ds", decided, T, 0, 0, images, seconds)


def _outcome(rule, decided, T, tb_images, tb_groups, images, seconds) -> Outcome:
    p, r, e = score(decided, T)
    # Two people answer all eight groups of every image; a tie-breaker the groups asked.
    return Outcome(rule, round(p, 4), round(r, 4), e, tb_images, tb_groups, round(16 + tb_groups / images, 3),
                   round(seconds, 2))


def scale(n_images: int, seed: int = 0) -> dict:
    """CPU seconds and peak memory of aggregating n_images x 2 answers x 228 labels
    (synthetic truth: one label per single-label group, 0-3 per multi-label group)."""
    import resource

    tax = Taxonomy.default()
    rng = np.random.default_rng(seed)
    truth = []
    for _ in range(n_images):
        mine = []
        for g in tax.groups:
            k = 1 if g.single else int(rng.integers(0, 4))
            mine += [int(x) for x in rng.choice(g.label_ids, size=min(k, len(g.label_ids)), replace=False)]
        truth.append(tuple(mine))
    n_workers = 20
    rows = [(i, int(w), simulate.slip(truth[i], tax, simulate.ERROR_TABLES["careful"], rng))
            for i in range(n_images) for w in rng.choice(n_workers, size=2, replace=False)]
    V = to_matrix([r[2] for r in rows], tax)
    items, workers = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, w0 = time.process_time(), time.perf_counter()
    agg = aggregation.aggregate(V, items, workers, n_images, n_workers, aggregation.group_columns(tax))
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    errors = int((agg.decision != to_matrix(truth, tax)).sum())
    return {"images": n_images, "answers": len(rows), "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
            "peak_rss_mib": round(peak / 1024), "rss_before_mib": round(before / 1024), "label_errors": errors,
            "iterations": agg.iterations}


def live_and_offline(data: Path, images: int, gold_rate: float, min_confidence: float, seed: int,
                     workdir: Path | None) -> dict:
    """The live round (review_live.live) and the offline run on the same images, printed as one table."""
    import tempfile

    from .review_live import live

    folder = Path(workdir or tempfile.mkdtemp(prefix="review-live-"))
    folder.mkdir(parents=True, exist_ok=True)
    res = live(data, images, gold_rate, min_confidence, seed, folder)
    offline = run(data, images, gold_rate, min_confidence, seed)
    print(f"\n{data}  images={images} gold={res['gold']} seed={seed}  (setup {res['setup_seconds']} s wall; "
          f"{res['posted']} answers posted, {res['mismatched_pool'] + res['mismatched_after']} synced differently)")
    print(f"{'rule':26} {'prec':>7} {'recall':>7} {'errors':>7} {'tb img':>7} {'tb grp':>7} {'ans/img':>8} {'LS ann':>7}")
    rows = res["outcomes"] + [o for o in offline["outcomes"] if o["rule"] in ("agg+tiebreak-any", "agg+tiebreak-uncertain",
                                                                             "majority+tiebreak")]
    for o in rows:
        print(f"{o['rule']:26} {o['precision']:7.4f} {o['recall']:7.4f} {o['errors']:7d} {o['tiebreak_images']:7d} "
              f"{o['tiebreak_groups']:7d} {o['group_answers_per_image']:8.2f} {o.get('annotations', ''):>7}")
    return {"live": res, "offline": offline}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, action="append", default=[])
    ap.add_argument("--scale", type=int, help="only time aggregating this many images x 2 answers x 228 labels")
    ap.add_argument("--clicks", type=int, help="only measure blind vs check clicks in headless Chromium on this many images "
                    "per --data (benchmarks/review_clicks.py)")
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--gold-rate", type=float, default=0.05)
    ap.add_argument("--min-confidence", type=float, default=0.95)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--live", action="store_true",
                    help="run the round on a real Label Studio this starts (benchmarks/review_live.py), beside the offline run")
    ap.add_argument("--workdir", type=Path, help="with --live or --clicks: where the workspaces, the server and the screenshots go (default: a temp folder)")
    args = ap.parse_args()
    if args.live:
        results = [live_and_offline(d, args.images, args.gold_rate, args.min_confidence, s, args.workdir)
                   for d in args.data for s in range(args.seeds)]
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return
    if args.scale:
        print(json.dumps(scale(args.scale)))
        return
    if args.clicks:
        import tempfile

        from .review_clicks import clicks_live

        folder = Path(args.workdir or tempfile.mkdtemp(prefix="review-clicks-"))
        folder.mkdir(parents=True, exist_ok=True)
        for d in args.data:
            print(json.dumps(clicks_live(d, args.clicks, 0, folder)))
        return
    results = [run(d, args.images, args.gold_rate, args.min_confidence, s) for d in args.data for s in range(args.seeds)]
    for res in results:
        print(f"\n{res['data']}  images={res['images']} gold={res['gold']}")
        print(f"{'rule':26} {'prec':>7} {'recall':>7} {'errors':>7} {'tb img':>7} {'tb grp':>7} {'ans/img':>8} {'cpu s':>6}")
        for o in res["outcomes"]:
            print(f"{o['rule']:26} {o['precision']:7.4f} {o['recall']:7.4f} {o['errors']:7d} {o['tiebreak_images']:7d} "
                  f"{o['tiebreak_groups']:7d} {o['group_answers_per_image']:8.2f} {o['seconds']:6.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
