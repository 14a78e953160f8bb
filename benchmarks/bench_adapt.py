"""What adapting the shipped student buys, and what it costs: the measurement behind docs/adapt.md.

For BC5CDR and NCBI-disease (``../shared/data``; their **train** files are used here only, for these
experiment students, never for a shipped one), every step one of the library's own commands:

1. the zero-shot student (``universalner-135m``): strict span F1 on the first ``--test-limit`` sentences
   of each test file, and the official F1 on the zero-shot benchmark sample (the first ``--zs-limit``
   sentences of each of the six sets in ``../shared/benchmarks/zero-shot``);
2. for each size in ``--sizes`` (default 50, 200, 1000): a seeded sample of that many training
   sentences, adapted with ``python -m universalner.tune --from universalner-135m`` (replay of the
   student's own Pile-NER conversations, ``--adapter continue``), its CPU and wall minutes measured;
3. at ``--ablation-size`` (default 200) on each corpus: the same without replay, and ``--adapter stack``
   with and without replay (which forgets less decides the default);
4. every adapted student on the same test sentences and the same zero-shot sample;
5. ``results.json``, ``table.md`` (the table for docs/adapt.md) and ``adapt.png`` (strict F1 against
   training sentences, zero-shot line; zero-shot sample before and after).

Every step resumes: rerun the same command after any stop (finished steps are read back, a killed
adaptation continues from its last checkpoint, a killed evaluation from its last stored sentence).

    python benchmarks/bench_adapt.py [--out runs/bench_adapt] [--threads 1]
    python benchmarks/bench_adapt.py --tiny          # the whole pipeline in minutes, numbers meaningless
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("UNIVERSALNER_SHARED", ROOT.parent / "shared"))
CORPORA = {  # name: (folder, train file, test file, --labels of tune --from); names pick evaluate's label map
    "bc5cdr": ("bc5cdr", "train.tsv", "test.tsv", "Chemical=chemical,Disease=disease"),
    "ncbi_disease": ("ncbi_disease", "train.tsv", "test.tsv", "Disease=disease"),
}
ZERO_SHOT = ["CrossNER_AI", "CrossNER_literature", "CrossNER_music", "CrossNER_politics", "CrossNER_science",
             "mit-restaurant"]  # fmt: skip
STUDENT = "universalner-135m"


def sh(args: list[str], threads: str, log: Path | None = None) -> dict:
    """Run ``python ARGS`` to the end; its wall and CPU seconds (user + system, children included)."""
    print("+ python", " ".join(args), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    if log is None:
        subprocess.run([sys.executable, *args], check=True, env=env)
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as f:
            subprocess.run([sys.executable, *args], check=True, env=env, stdout=f, stderr=subprocess.STDOUT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(time.time() - t0, 1), "cpu_s": round(cpu, 1)}


def cached(path: Path, make) -> dict:
    """A step's result: read back when it finished before, else made and written."""
    if path.is_file():
        return json.loads(path.read_text())
    result = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(path)
    return result


def sample_train(corpus: str, n: int, seed: int, out: Path) -> Path:
    """``n`` training sentences drawn with ``seed``, written back as a BIO file (token TAB tag)."""
    from universalner.corpora import read_conll

    folder, train, _, _ = CORPORA[corpus]
    sents = read_conll(SHARED / "data" / folder / train)
    picked = sorted(random.Random(f"{seed}:{corpus}").sample(range(len(sents)), min(n, len(sents))))
    path = out / f"{corpus}-train-{n}.bio"
    if not path.is_file():
        text = "\n".join("".join(f"{t}\t{g}\n" for t, g in zip(sents[i].tokens, sents[i].tags, strict=True))
                         for i in picked)  # fmt: skip
        path.write_text(text, encoding="utf-8")
    return path


def evaluate(model: str, data: list[str], folder: Path, limit: int, threads: str) -> dict:
    """``evaluate run`` (resumes inside ``folder``): {set: {strict_f1, official_f1}}, and its cost."""
    cost = sh(["-m", "universalner.evaluate", "run", "--model", model, "--data", *data, "--limit", str(limit),
               "--output", str(folder), "--no-progress"], threads, folder.parent / f"{folder.name}.log")  # fmt: skip
    sets = json.loads((folder / "metrics.json").read_text())["sets"]
    return {
        "sets": {k: {"strict_f1": v["strict"]["f1"], "official_f1": v["official"]["f1"], "n": v["n_sentences"]}
                 for k, v in sets.items()},
        **cost,
    }  # fmt: skip


def test_data(corpus: str) -> str:
    folder, _, test, _ = CORPORA[corpus]
    return f"{corpus}={SHARED / 'data' / folder / test}"


def zs_data(sets: list[str]) -> list[str]:
    return [f"{s}={SHARED / 'benchmarks' / 'zero-shot' / (s + '.json')}" for s in sets]


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def plan(a: argparse.Namespace) -> list[dict]:
    """Every adaptation: the main curve (continue + replay) and the ablations at one size."""
    runs = []
    for corpus in a.corpora:
        for n in a.sizes:
            runs.append({"corpus": corpus, "n": n, "adapter": "continue", "replay": True})
        if a.ablation_size:
            for adapter, replay in a.ablations:
                runs.append({"corpus": corpus, "n": a.ablation_size, "adapter": adapter, "replay": replay})
    return runs


def _ablations(value: str) -> list[tuple[str, bool]]:
    """``continue-noreplay,stack-replay`` -> [("continue", False), ("stack", True)]."""
    out = []
    for item in filter(None, value.split(",")):
        adapter, _, replay = item.partition("-")
        if adapter not in ("continue", "stack") or replay not in ("replay", "noreplay"):
            raise argparse.ArgumentTypeError(
                f"{item!r}: want ADAPTER-replay or ADAPTER-noreplay, ADAPTER continue|stack"
            )
        out.append((adapter, replay == "replay"))
    return out


def run_name(r: dict) -> str:
    return f"{r['corpus']}-{r['n']}-{r['adapter']}-{'replay' if r['replay'] else 'noreplay'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_adapt"))
    ap.add_argument("--corpora", type=lambda v: v.split(","), default=list(CORPORA))
    ap.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[50, 200, 1000])
    ap.add_argument(
        "--ablation-size", type=int, default=200, help="size of the replay/stack ablations (0: none)"
    )
    ap.add_argument("--ablations", type=_ablations, default=_ablations("continue-noreplay,stack-replay,stack-noreplay"),
                    help="which ablations run at --ablation-size: ADAPTER-replay|noreplay, comma-separated")  # fmt: skip
    ap.add_argument("--test-limit", type=int, default=500, help="first N test sentences of each corpus")
    ap.add_argument("--zs-limit", type=int, default=100, help="first N sentences of each zero-shot set")
    ap.add_argument("--zs-sets", type=lambda v: v.split(","), default=ZERO_SHOT)
    ap.add_argument("--replay", default=str(SHARED / "data" / "pilener" / "pilener_391types.bio"))
    ap.add_argument("--threads", default="1", help="OMP_NUM_THREADS of every step (CPU minutes are summed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--tune-args", default="", help="extra arguments for every `tune --from`, e.g. '--epochs 3'"
    )
    ap.add_argument("--compare", nargs="+", metavar="OUT[=NAME]",
                    help="compare finished runs of other settings (--out folders of runs with other --tune-args, "
                    "NAME: how to call it, default its --tune-args): compare.md and compare.png in --out; "
                    "measure nothing new")  # fmt: skip
    ap.add_argument("--report", action="store_true",
                    help="write table.md and adapt.png from the finished runs only; measure nothing new")  # fmt: skip
    ap.add_argument("--tiny", action="store_true",
                    help="prove the pipeline end to end in minutes: 8 sentences, 2 steps, 4 test and 2 zero-shot "
                    "sentences, one zero-shot set, one ablation")  # fmt: skip
    a = ap.parse_args()
    if a.compare:
        named = [o.partition("=") for o in a.compare]
        missing = [o for o, _, _ in named if not (Path(o) / "results.json").is_file()]
        if missing:
            sys.exit(
                f"bench_adapt --compare: no results.json in {', '.join(missing)} (finish those runs first)"
            )
        compare(
            [(json.loads((Path(o) / "results.json").read_text()), name) for o, _, name in named], Path(a.out)
        )
        return
    extra = a.tune_args.split()
    if a.tiny:
        a.corpora, a.sizes, a.ablation_size = ["bc5cdr"], [8], 0
        a.test_limit, a.zs_limit, a.zs_sets = 4, 2, ["CrossNER_AI"]
        extra = ["--max-steps", "2", "--batch-size", "2", "--grad-accum", "1", "--dev-share", "0.7",
                 "--replay-ratio", "0.5", *extra]  # fmt: skip
    out = Path(a.out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    results: dict = {"settings": {k: v for k, v in vars(a).items()}, "zero_shot": {}, "runs": []}

    # 1. the zero-shot student
    for corpus in a.corpora:
        results["zero_shot"][corpus] = cached(
            out / "results" / f"zero-shot-{corpus}.json",
            lambda c=corpus: evaluate(STUDENT, [test_data(c)], out / "eval" / f"zero-shot-{c}", a.test_limit,
                                      a.threads),
        )  # fmt: skip
    results["zero_shot"]["sample"] = cached(
        out / "results" / "zero-shot-sample.json",
        lambda: evaluate(
            STUDENT, zs_data(a.zs_sets), out / "eval" / "zero-shot-sample", a.zs_limit, a.threads
        ),
    )

    # 2-4. adaptations, each evaluated on its corpus's test sentences and on the zero-shot sample
    plans = plan(a)
    if a.tiny:
        plans.append({"corpus": "bc5cdr", "n": 8, "adapter": "stack", "replay": False})
    for r in plans:
        name = run_name(r)
        student = out / "students" / name
        if a.report and not all(
            (out / "results" / f"{name}-{k}.json").is_file() for k in ("adapt", "test", "sample")
        ):
            print(f"{name}: not measured yet, left out of the report")
            continue

        def adapt(r=r, student=student, name=name) -> dict:
            data = sample_train(r["corpus"], r["n"], a.seed, out / "data")
            args = ["-m", "universalner.tune", "--from", STUDENT, "--data", str(data), "--output", str(student),
                    "--labels", CORPORA[r["corpus"]][3], "--adapter", r["adapter"],
                    "--replay", a.replay if r["replay"] else "none", "--seed", str(a.seed), *extra]  # fmt: skip
            if (student / "tune_config.json").is_file():
                args.append("--resume")
            cost = sh(args, a.threads, out / "students" / f"{name}.log")
            record = json.loads((student / "universalner.json").read_text())
            return {**cost, "steps": record["adapted"]["steps"], "dev": record.get("dev", {}),
                    "threshold": record.get("threshold"), "list_threshold": record.get("list_threshold")}  # fmt: skip

        (out / "students").mkdir(parents=True, exist_ok=True)
        tuned = cached(out / "results" / f"{name}-adapt.json", adapt)
        test = cached(
            out / "results" / f"{name}-test.json",
            lambda r=r, s=student, n=name: evaluate(str(s), [test_data(r["corpus"])], out / "eval" / f"{n}-test",
                                                   a.test_limit, a.threads),
        )  # fmt: skip
        sample = cached(
            out / "results" / f"{name}-sample.json",
            lambda s=student, n=name: evaluate(str(s), zs_data(a.zs_sets), out / "eval" / f"{n}-sample",
                                               a.zs_limit, a.threads),
        )  # fmt: skip
        results["runs"].append({**r, "name": name, "adapt": tuned, "test": test, "sample": sample})

    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    (out / "table.md").write_text(table)
    plot(results, out / "adapt.png")
    print(table)
    print(f"results in {out / 'results.json'}, {out / 'table.md'}, {out / 'adapt.png'}")


def _sample_f1(ev: dict) -> float:
    return 100 * mean([s["official_f1"] for s in ev["sets"].values()])


def markdown(res: dict) -> str:
    rows = ["| corpus | training sentences | adapter | replay | strict F1 (test) | vs zero-shot | zero-shot sample "
            "(official F1) | vs before | CPU min (adapt) | wall min (adapt) |",
            "|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    before = _sample_f1(res["zero_shot"]["sample"])
    for corpus in res["settings"]["corpora"]:
        zs = 100 * res["zero_shot"][corpus]["sets"][corpus]["strict_f1"]
        rows.append(f"| {corpus} | 0 (zero-shot) | | | {zs:.1f} | | {before:.1f} | | | |")
        for r in (r for r in res["runs"] if r["corpus"] == corpus):
            f1 = 100 * r["test"]["sets"][corpus]["strict_f1"]
            after = _sample_f1(r["sample"])
            rows.append(
                f"| {corpus} | {r['n']} | {r['adapter']} | {'yes' if r['replay'] else 'no'} | {f1:.1f} | "
                f"{f1 - zs:+.1f} | {after:.1f} | {after - before:+.1f} | {r['adapt']['cpu_s'] / 60:.1f} | "
                f"{r['adapt']['wall_s'] / 60:.1f} |"
            )
    s = res["settings"]
    rows += ["", f"Test: first {s['test_limit']} sentences of each test file; zero-shot sample: first "
             f"{s['zs_limit']} sentences of {', '.join(s['zs_sets'])} (mean official F1); {s['threads']} thread(s)."]  # fmt: skip
    return "\n".join(rows) + "\n"


def compare(results: list[tuple[dict, str]], out: Path) -> None:
    """Settings side by side (each its own bench_adapt run): dev, test and forgetting, and the goal.

    The dev column (strict F1 on the adapted student's own dev share) is what a setting is chosen on;
    test and the zero-shot sample only report it."""
    rows = ["| corpus | sentences | settings (`--tune-args`) | dev strict F1 | test strict F1 | vs zero-shot | "
            "zero-shot sample | vs before | CPU min | wall min | threads |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    points = []
    for res, name in results:
        before = _sample_f1(res["zero_shot"]["sample"])
        args = name or res["settings"].get("tune_args") or "the defaults of the code that ran it"
        for r in res["runs"]:
            corpus = r["corpus"]
            zs = 100 * res["zero_shot"][corpus]["sets"][corpus]["strict_f1"]
            f1, after = 100 * r["test"]["sets"][corpus]["strict_f1"], _sample_f1(r["sample"])
            dev = 100 * r["adapt"]["dev"].get("strict_f1", float("nan"))
            rows.append(
                f"| {corpus} | {r['n']} | {args} | {dev:.1f} | {f1:.1f} | {f1 - zs:+.1f} | {after:.1f} | "
                f"{after - before:+.1f} | {r['adapt']['cpu_s'] / 60:.1f} | {r['adapt']['wall_s'] / 60:.1f} | "
                f"{res['settings']['threads']} |"
            )
            points.append((after - before, f1 - zs, f"{corpus} {r['n']}: {args} (dev {dev:.1f})"))
    if not points:
        sys.exit("bench_adapt --compare: the runs given hold no finished adaptation")
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    top = max([25.0] + [p[1] for p in points]) + 3
    ax.axvspan(-2, max(2.0, max(p[0] for p in points) + 1), ymin=25 / top, ymax=1, color="C2", alpha=0.12,
               label="the goal: >= +25 on test, sample loses <= 2")  # fmt: skip
    for k, (x, y, lab) in enumerate(points):
        ax.plot([x], [y], "os^Dv<>p"[k % 8], color=f"C{k}", label=lab)
    ax.set_ylim(0, top)
    ax.set_xlabel("zero-shot sample, change in official F1 (points)")
    ax.set_ylabel("test strict span F1, gain over zero-shot (points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower left")
    ax.set_title("tune --from: settings compared (chosen on dev, reported on test)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "compare.png")
    print(f"written: {out / 'compare.md'}, {out / 'compare.png'}")


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    before = _sample_f1(res["zero_shot"]["sample"])
    for k, corpus in enumerate(res["settings"]["corpora"]):
        color = f"C{k}"
        zs = 100 * res["zero_shot"][corpus]["sets"][corpus]["strict_f1"]
        main = sorted((r for r in res["runs"] if r["corpus"] == corpus and r["adapter"] == "continue" and r["replay"]),
                      key=lambda r: r["n"])  # fmt: skip
        ax.plot([r["n"] for r in main], [100 * r["test"]["sets"][corpus]["strict_f1"] for r in main], "o-",
                color=color, label=f"{corpus}, adapted")  # fmt: skip
        ax.axhline(zs, color=color, ls=":", label=f"{corpus}, zero-shot")
        bx.plot(
            [r["n"] for r in main], [_sample_f1(r["sample"]) for r in main], "o-", color=color, label=corpus
        )
        for r in res["runs"]:
            if r["corpus"] == corpus and not (r["adapter"] == "continue" and r["replay"]):
                mark = {"continue": "s", "stack": "^"}[r["adapter"]]
                fill = color if r["replay"] else "none"
                lab = f"{corpus}: {r['adapter']}, {'replay' if r['replay'] else 'no replay'}"
                ax.plot(
                    [r["n"]],
                    [100 * r["test"]["sets"][corpus]["strict_f1"]],
                    mark,
                    mfc=fill,
                    color=color,
                    label=lab,
                )
                bx.plot([r["n"]], [_sample_f1(r["sample"])], mark, mfc=fill, color=color)
    bx.axhline(before, color="gray", ls=":", label="before adapting")
    for x in (ax, bx):
        x.set_xscale("log")
        x.set_xlabel("training sentences")
        x.grid(alpha=0.3)
    ax.set_ylabel("strict span F1 on the test file (%)")
    bx.set_ylabel("zero-shot sample, official F1 (%)")
    ax.legend(fontsize=6)
    bx.legend(fontsize=7)
    fig.suptitle("universalner-135m adapted with tune --from (continue + replay unless marked)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
