"""GLiNER beside the default student on the CPU: sentences/s and peak memory, in one run.

GLiNER (the span model users compare us with) at the shapes of GLiNER-S and GLiNER-M, and the default
student (``UniversalNER.from_pretrained()``: the shipped ``universalner-135m`` on its recorded CPU path,
float32 on a CPU without native bf16), on the first 100 CrossNER politics test sentences
(../shared/data/crossner/politics/test.txt, file order), K = 1, 4, 8, 16 types (bench_cpu's types: the
politics types first, then 8 of other domains), batch 8, ``--threads`` torch threads. Each system runs
in a fresh process (peak RSS is its own, loading included); each timing is the best of ``--repeats``
after one warm-up batch. Reported per system and K: sentences/s, peak RSS, and GLiNER-S / ours.

**The peer has random weights, and its speed is still its speed.** No hub is reachable here, so each
GLiNER is built from a local config at the published shapes (gliner_small/medium-v2.1: DeBERTa-v3-small,
6 layers, or -base, 12 layers, hidden 768, 128,100 embedding rows; span_mode markerV0, max_width 12,
hidden_size 512, an LSTM, max_len 384, whitespace words), random weights saved once and loaded with
``GLiNER.from_pretrained`` in float32, and run through its batched API (``inference``, which
``batch_predict_entities`` forwards to) as a user runs it on a CPU. The compute does not depend on the
weights' values: the same shapes see the same tokens and spans. Only the threshold changes what is
decoded, so it is calibrated: per K, GLiNER's threshold is set so that it keeps as many spans on the
timed sentences as they have gold mentions of the asked types (its greedy flat decoding keeps exactly
the threshold-0 answer's spans that score above the threshold, so one untimed pass at 0 fixes it); the
spans it keeps in the timed runs are reported beside gold, and ours beside them.

**The tokenizer is a substitute.** DeBERTa-v3's sentencepiece model cannot be downloaded here: a
unigram sentencepiece model (32,000 pieces, DeBERTa-v3's special tokens) is trained on the shared
passages and Pile-NER texts (no CrossNER text) and wrapped as transformers' ``DebertaV2Tokenizer``; the
model keeps DeBERTa-v3's 128,100 embedding rows. Speed follows token counts, so the run reports its
subword tokens per word and per sentence (1.26 per word on these sentences, within DeBERTa-v3's usual
1.2-1.4 on English news).

**The peer's interpreter.** gliner 0.2.29 needs transformers < 5.17 and the library uses a newer one,
so GLiNER runs in its own environment (installing it beside the library would downgrade transformers;
hence no ``peer`` extra)::

    python -m venv ~/peer-venv && ~/peer-venv/bin/pip install torch==2.13.0 gliner==0.2.29 sentencepiece
    #   (a CPU torch: add --index-url https://download.pytorch.org/whl/cpu where pip would fetch CUDA's)
    python benchmarks/bench_peer.py --peer-python ~/peer-venv/bin/python    # or $UNIVERSALNER_PEER_PYTHON
    python benchmarks/bench_peer.py --quick --json    # 24 sentences, K = 8, 16, one repeat; one JSON line

Without such an interpreter (nor gliner in this one) the GLiNER rows are skipped with a note. The
tokenizer and the random checkpoints (0.6 and 0.75 GB) are built once under the cache
(``bench_peer/`` in the library's cache folder; a minute or two). ``--json`` ends in one JSON line:
{"ratio_s_over_ours": {K: GLiNER-S sentences/s over ours}, "systems": {...}, ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_cpu import DATA, EXTRA_TYPES

SYSTEMS = ("ours", "gliner-s", "gliner-m")
NAMES = {"ours": "ours (universalner-135m)", "gliner-s": "GLiNER-S shape", "gliner-m": "GLiNER-M shape"}
LAYERS = {"gliner-s": 6, "gliner-m": 12}  # DeBERTa-v3-small / -base: everything else below is shared
SPM_VOCAB = 32_000  # 1.26 subword tokens per word here; the largest these texts allow (68k) gives 1.20
RECIPE = f"v1-spm{SPM_VOCAB}"  # the cache folder: change it when the build below changes
SHARED = DATA.parents[1]  # ../shared/data
# DeBERTa-v3-small/base's config.json (microsoft/deberta-v3-*), less the layer count
DEBERTA_V3 = dict(model_type="deberta-v2", vocab_size=128_100, hidden_size=768, num_attention_heads=12,
                  intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
                  attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=0,
                  initializer_range=0.02, layer_norm_eps=1e-7, relative_attention=True,
                  max_relative_positions=-1, position_buckets=256, norm_rel_ebd="layer_norm",
                  share_att_key=True, pos_att_type=["p2c", "c2p"], position_biased_input=False,
                  pad_token_id=0)  # fmt: skip
# urchade/gliner_small-v2.1 and gliner_medium-v2.1's gliner_config.json
GLINER_V21 = dict(max_width=12, hidden_size=512, dropout=0.4, fine_tune=True, subtoken_pooling="first",
                  span_mode="markerV0", max_types=25, max_len=384, words_splitter_type="whitespace",
                  num_rnn_layers=1, ent_token="<<ENT>>", sep_token="<<SEP>>")  # fmt: skip


# --- the peer, built once (runs under the peer's interpreter) --------------------------------------
def corpus() -> list[str]:
    """Text to train the substitute tokenizer on: the shared passages and Pile-NER's, never CrossNER."""
    lines: list[str] = []
    for f in sorted((SHARED / "passages").glob("*.jsonl")):
        for row in f.read_text(encoding="utf-8").splitlines():
            lines += [p.strip() for p in json.loads(row)["text"].split("\n") if p.strip()]
    words: list[str] = []
    for row in (SHARED / "pilener" / "pilener_391types.bio").read_text(encoding="utf-8").splitlines():
        if row.strip():
            words.append(row.split("\t")[0])
        elif words:
            lines.append(" ".join(words))
            words = []
    return lines


def build_tokenizer(folder: Path) -> None:
    """DeBERTa-v3's tokenizer as near as this machine allows: a unigram sentencepiece model with its
    special tokens ([PAD] [CLS] [SEP] [UNK] first, [MASK] last), as transformers' DebertaV2Tokenizer."""
    import io

    import sentencepiece as spm
    from transformers import DebertaV2Tokenizer

    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_writer=proto, model_type="unigram", vocab_size=SPM_VOCAB,
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
        unk_piece="[UNK]", character_coverage=0.9999, num_threads=1, minloglevel=2,
    )  # fmt: skip
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    vocab = [(sp.id_to_piece(i), 0.0 if i < 4 else sp.get_score(i)) for i in range(sp.get_piece_size())]
    DebertaV2Tokenizer(vocab=[*vocab, ("[MASK]", 0.0)]).save_pretrained(folder)
    (folder / "spm.model").write_bytes(proto.getvalue())


def build_peer(system: str, cache: Path) -> None:
    """The random-weight GLiNER of ``system``'s shape as a local model folder (config, tokenizer,
    weights), as a published one is laid out; built in a scratch folder and renamed when complete."""
    import shutil
    import warnings

    import torch
    from gliner import GLiNER, GLiNERConfig
    from transformers import AutoTokenizer

    tok_dir = cache / "tokenizer"
    if not (tok_dir / "spm.model").is_file():
        tmp = Path(tempfile.mkdtemp(dir=cache))
        build_tokenizer(tmp)
        shutil.rmtree(tok_dir, ignore_errors=True)
        os.replace(tmp, tok_dir)
    tmp = Path(tempfile.mkdtemp(dir=cache))
    tok = AutoTokenizer.from_pretrained(tok_dir)
    tok.add_tokens([GLINER_V21["ent_token"], GLINER_V21["sep_token"]], special_tokens=True)
    enc = {**DEBERTA_V3, "num_hidden_layers": LAYERS[system]}
    # explicit class_token_index and vocab_size: GLiNER keeps all 128,100 rows (else it would resize the
    # embeddings to this tokenizer's 32,003); it warns that they differ, which is the point
    folder = cache / system  # model_name: where it will lie (its tokenizer is there too)
    cfg = GLiNERConfig(model_name=str(folder), vocab_size=DEBERTA_V3["vocab_size"], encoder_config=enc,
                       class_token_index=tok.convert_tokens_to_ids(GLINER_V21["ent_token"]), **GLINER_V21)  # fmt: skip
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # 0.2.29's GLiNER(cfg) picks this class, then fails to become it (an nn.Module): build it directly
        cls = getattr(GLiNER, "_get_gliner_class", lambda _: GLiNER)(cfg)
        model = cls(cfg, tokenizer=tok, backbone_from_pretrained=False)
    model.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def calibrate(predict, texts: list[str], types: list[str], per_sentence: float, batch_size: int) -> float:
    """The threshold at which GLiNER keeps ``per_sentence`` spans per sentence of ``texts`` (random
    weights make its scores meaningless; a trained model keeps about gold's count). Its flat
    decoding is greedy by score, so what a threshold keeps is exactly the threshold-0 answer's spans
    that score above it: one pass at 0, then the midpoint between the n-th and (n+1)-th scores."""
    scores = sorted((e["score"] for p in predict(texts, types, threshold=0.0, batch_size=batch_size) for e in p),
                    reverse=True)  # fmt: skip
    n = round(per_sentence * len(texts))
    if n >= len(scores):
        return 0.0
    return scores[0] if n == 0 else (scores[n - 1] + scores[n]) / 2


def peer_worker(opts, job: dict) -> dict:
    """One GLiNER: load as users do, warm up, calibrate each K's threshold, time every K."""
    import warnings

    warnings.filterwarnings("ignore")  # the vocab_size note (see build_peer), deprecations
    import gliner
    import torch
    import transformers
    from gliner import GLiNER

    torch.set_num_threads(opts.threads)
    folder = Path(job["cache"]) / opts.worker
    model = GLiNER.from_pretrained(str(folder), local_files_only=True)  # float32, torch, as on a CPU
    predict = getattr(model, "inference", None) or model.batch_predict_entities  # older: only the latter
    texts, bs = job["texts"], job["batch_size"]
    predict(texts[:bs], job["warmup_types"], threshold=0.5, batch_size=bs)  # warm-up
    # tokens as GLiNER feeds them: its word splitter, each word its own piece sequence
    tok, split = model.data_processor.transformer_tokenizer, model.data_processor.words_splitter
    words = [[w for w, _, _ in split(t)] for t in texts]
    n_tok = [len(tok(w, is_split_into_words=True, add_special_tokens=False)["input_ids"]) for w in words]
    out: dict = {"system": opts.worker, "threads": torch.get_num_threads(), "weights": "random",
                 "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
                 "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
                 "versions": {"gliner": gliner.__version__, "transformers": transformers.__version__,
                              "torch": torch.__version__},
                 "tokens_per_word": round(sum(n_tok) / sum(map(len, words)), 3),
                 "tokens_per_sentence": round(sum(n_tok) / len(texts), 1), "ks": {}}  # fmt: skip
    for k, spec in job["ks"].items():
        th = calibrate(predict, texts, spec["types"], spec["gold_per_sentence"], bs)
        best, got = None, None
        for _ in range(job["repeats"]):
            t0 = time.perf_counter()
            preds = predict(texts, spec["types"], threshold=th, batch_size=bs)
            dt = time.perf_counter() - t0
            if best is None or dt < best:
                best, got = dt, preds
        prompt = sum(1 + len(tok.tokenize(t)) for t in spec["types"]) + 1  # <<ENT>> type ... <<SEP>>
        out["ks"][k] = {"seconds": round(best, 3), "sentences_per_s": round(len(texts) / best, 4),
                        "threshold": round(th, 6), "spans_per_sentence": round(sum(map(len, got)) / len(texts), 2),
                        "encoder_tokens_per_sentence": round(2 + prompt + sum(n_tok) / len(texts), 1)}  # fmt: skip
    return out


# --- the default student (runs under this interpreter) ---------------------------------------------
def ours_worker(opts, job: dict) -> dict:
    """The default student as a user loads it, timed on the same sentences and types."""
    import torch

    from universalner import UniversalNER

    torch.set_num_threads(opts.threads)
    ner = UniversalNER.from_pretrained()
    texts, bs = job["texts"], job["batch_size"]
    ner.predict(texts[:bs], job["warmup_types"], batch_size=bs)  # warm-up: caches, allocator, kernels
    model = getattr(ner.engine, "model", None)
    params = list(model.parameters()) if model is not None else []
    out: dict = {"system": "ours", "threads": torch.get_num_threads(), "weights": "universalner-135m",
                 "dtype": str(params[0].dtype).replace("torch.", "") if params else "?",
                 "params_m": round(sum(p.numel() for p in params) / 1e6, 1) if params else None,
                 "versions": {"torch": torch.__version__}, "ks": {}}  # fmt: skip
    for k, spec in job["ks"].items():
        best, got = None, None
        for _ in range(job["repeats"]):
            t0 = time.perf_counter()
            preds = ner.predict(texts, spec["types"], batch_size=bs)
            dt = time.perf_counter() - t0
            if best is None or dt < best:
                best, got = dt, preds
        out["ks"][k] = {"seconds": round(best, 3), "sentences_per_s": round(len(texts) / best, 4),
                        "spans_per_sentence": round(sum(len(p.entities) for p in got) / len(texts), 2)}  # fmt: skip
    return out


def worker(opts) -> None:
    """One system in this process; its numbers and peak RSS (loading included) as JSON to ``opts.out``."""
    import resource

    job = json.loads(Path(opts.job).read_text())
    if opts.worker.startswith("build-"):
        build_peer(opts.worker.removeprefix("build-"), Path(job["cache"]))
        return
    out = ours_worker(opts, job) if opts.worker == "ours" else peer_worker(opts, job)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    Path(opts.out).write_text(json.dumps(out))


# --- the run ---------------------------------------------------------------------------------------
def make_job(opts) -> dict:
    """Sentences, types per K and their gold counts, for both interpreters (the peer's cannot import
    the library)."""
    from universalner.evaluate.dataset import load_eval_set
    from universalner.weights.cache import cache_dir

    test = load_eval_set(DATA / "test.txt", "crossner_politics")
    labels = list(test.labels)
    timed = test.sentences[: opts.sentences]
    ks = {}
    for k in opts.ks:
        types = (labels + EXTRA_TYPES)[:k]
        gold = sum(e.label in types for s in timed for e in s.entities)
        ks[str(k)] = {"types": types, "gold_per_sentence": gold / len(timed)}
    return {"texts": [s.text for s in timed], "ks": ks, "warmup_types": labels, "batch_size": opts.batch_size, "repeats": opts.repeats,
            "cache": str(Path(opts.cache or cache_dir() / "bench_peer") / RECIPE)}  # fmt: skip


def find_peer_python(opts, log) -> str | None:
    """The interpreter that runs GLiNER: ``--peer-python``, else $UNIVERSALNER_PEER_PYTHON, else this
    one if it imports gliner; None (with how to make one) when there is none."""
    import importlib.util

    exe = opts.peer_python or os.environ.get("UNIVERSALNER_PEER_PYTHON")
    if not exe and importlib.util.find_spec("gliner") is not None:
        exe = sys.executable
    how = ("make one: python -m venv ~/peer-venv && ~/peer-venv/bin/pip install torch==2.13.0 gliner==0.2.29 "
           "sentencepiece, then --peer-python ~/peer-venv/bin/python")  # fmt: skip
    if not exe:
        log(f"GLiNER rows skipped: no interpreter with gliner (--peer-python); {how}")
        return None
    check = "import gliner, sentencepiece, torch; print(gliner.__version__, torch.__version__)"
    proc = subprocess.run([exe, "-c", check], capture_output=True, text=True, env=peer_env())
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        log(f"GLiNER rows skipped: {exe} cannot run gliner ({tail}); {how}")
        return None
    version, torch_version = proc.stdout.split()[:2]
    log(f"peer: {exe} (gliner {version}, torch {torch_version})")
    return exe


def peer_env() -> dict:
    """The peer's environment: offline (nothing may be fetched), without the library's PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1"}


def run_child(name: str, exe: str, opts, job_path: str, log) -> dict | None:
    """``name`` in a fresh process under ``exe``; its JSON, or None (and the reason) if it failed."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [exe, __file__, "--worker", name, "--job", job_path, "--out", out, "--threads", str(opts.threads)]
    env = peer_env() if name != "ours" else dict(os.environ, TQDM_DISABLE="1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    try:
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            log(f"  {name:<16} failed: {tail}")
            return None
        res = json.loads(Path(out).read_text()) if not name.startswith("build-") else {}
    finally:
        os.unlink(out)
    log(f"  {name:<16} done in {time.perf_counter() - t0:.0f} s")
    return res


def tables(results: dict, ks: list[int]) -> tuple[str, str]:
    """The results as a fixed-width table and as markdown: sentences/s per K, then GLiNER / ours."""
    head = ["system", "weights", "dtype", "params M"] + [f"K={k} sent/s" for k in ks] + ["peak RSS MB"]
    rows = []
    for name, r in results.items():
        rows.append([NAMES[name], r["weights"], r["dtype"], f"{r['params_m'] or 0:.0f}"]
                    + [f"{r['ks'][str(k)]['sentences_per_s']:.2f}" for k in ks] + [f"{r['peak_rss_mb']:,.0f}"])  # fmt: skip
    for peer in ("gliner-s", "gliner-m"):
        if peer in results and "ours" in results:
            rows.append([f"{NAMES[peer].split()[0]} / ours", "", "", ""]
                        + [f"{ratio(results, peer, k):.2f}x" for k in ks] + [""])  # fmt: skip
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fixed = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in [head, ["-" * w for w in widths], *rows]]  # fmt: skip
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(head) - 3)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(fixed), "\n".join(md)


def ratio(results: dict, peer: str, k: int) -> float:
    """``peer``'s sentences/s over ours at K = k."""
    return results[peer]["ks"][str(k)]["sentences_per_s"] / results["ours"]["ks"][str(k)]["sentences_per_s"]


def notes(results: dict, job: dict) -> str:
    """What the peer's numbers are and are not: random weights, calibrated thresholds, the tokenizer."""
    peers = [n for n in ("gliner-s", "gliner-m") if n in results]
    if not peers:
        return ""
    r0 = results[peers[0]]
    lines = [
        "NOTE: the GLiNER rows have RANDOM weights (no hub here), at the real shapes. Their speed is still "
        "GLiNER's: the compute does not depend on weight values (same layers, same tokens, same spans "
        "scored); the threshold only decides how many spans are decoded, so it is set per K to keep as many "
        "spans as gold has on these sentences:",
    ]
    for k, spec in job["ks"].items():
        kept = ", ".join(f"{NAMES[n].split()[0]} {results[n]['ks'][k]['spans_per_sentence']:.1f} "
                         f"(threshold {results[n]['ks'][k]['threshold']:.4f})" for n in peers)  # fmt: skip
        ours = results.get("ours", {}).get("ks", {}).get(k)
        also = f", ours {ours['spans_per_sentence']:.1f}" if ours else ""
        lines.append(f"  K={k}: gold {spec['gold_per_sentence']:.1f} spans/sentence; kept {kept}{also}")
    lines.append(
        f"Tokenizer: a substitute for DeBERTa-v3's (sentencepiece unigram, {SPM_VOCAB:,} pieces, trained on "
        f"the shared passages and Pile-NER texts; 128,100 embedding rows kept): {r0['tokens_per_word']:.2f} subword tokens per "
        f"word, {r0['tokens_per_sentence']:.1f} per sentence (DeBERTa-v3: about 1.2-1.4 per word on English "
        f"news); GLiNER's encoder sees about "
        + ", ".join(f"{spec['encoder_tokens_per_sentence']:.0f} (K={k})" for k, spec in r0["ks"].items())
        + " tokens per sentence, types included."
    )
    v = r0["versions"]
    lines.append(f"Peer: gliner {v['gliner']}, transformers {v['transformers']}, torch {v['torch']}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="24 sentences, K = 8 and 16, one repeat")
    ap.add_argument("--json", action="store_true", help="end with one JSON line")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {','.join(SYSTEMS)}")
    ap.add_argument("--sentences", type=int, default=None, help="timed (default 100; --quick 24)")
    ap.add_argument("--ks", default=None, help="types per sentence (default 1,4,8,16; --quick 8,16)")
    ap.add_argument("--repeats", type=int, default=None, help="best of (default 2; --quick 1)")
    ap.add_argument("--threads", type=int, default=None, help="per system (default: all usable cores)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--peer-python", help="with gliner (default: $UNIVERSALNER_PEER_PYTHON)")
    ap.add_argument("--cache", help="where the peer is built once (default: the library's cache/bench_peer)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    opts.threads = opts.threads or len(os.sched_getaffinity(0))
    if opts.worker:
        worker(opts)
        return 0
    opts.ks = [int(k) for k in (opts.ks or ("8,16" if opts.quick else "1,4,8,16")).split(",")]
    opts.sentences = opts.sentences or (24 if opts.quick else 100)
    opts.repeats = opts.repeats or (1 if opts.quick else 2)
    systems = [s for s in opts.systems.split(",") if s]
    if bad := [s for s in systems if s not in SYSTEMS]:
        raise SystemExit(f"--systems: unknown {bad}")
    if not (DATA / "test.txt").is_file():
        raise SystemExit(f"missing {DATA / 'test.txt'}: the shared CrossNER data is needed")
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if opts.json else print
    log(f"load average {os.getloadavg()[0]:.2f}, {opts.threads} thread(s), K={opts.ks}, "
        f"{opts.sentences} test sentences, batch {opts.batch_size}, best of {opts.repeats}")  # fmt: skip
    job = make_job(opts)
    peer = find_peer_python(opts, log) if any(s != "ours" for s in systems) else None
    results: dict[str, dict] = {}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
    try:
        for name in systems:
            if name != "ours":
                if peer is None:
                    continue
                Path(job["cache"]).mkdir(parents=True, exist_ok=True)
                if not (Path(job["cache"]) / name / "gliner_config.json").is_file():
                    log(f"  building {name} (random weights) under {job['cache']}, once")
                    if run_child(f"build-{name}", peer, opts, f.name, log) is None:
                        continue
            r = run_child(name, sys.executable if name == "ours" else peer, opts, f.name, log)
            if r is not None:
                results[name] = r
    finally:
        os.unlink(f.name)
    if not results:
        raise SystemExit("no system ran; see above")
    fixed, md = tables(results, opts.ks)
    log(fixed)
    log("")
    log(md)
    if note := notes(results, job):
        log("")
        log(note)
    if opts.json:
        ratios = {str(k): round(ratio(results, "gliner-s", k), 3) for k in opts.ks} if {"ours", "gliner-s"} <= set(results) else None  # fmt: skip
        print(json.dumps({"ratio_s_over_ours": ratios, "sentences": opts.sentences, "threads": opts.threads,
                          "batch_size": opts.batch_size, "repeats": opts.repeats,
                          "gold_per_sentence": {k: round(s["gold_per_sentence"], 2) for k, s in job["ks"].items()},
                          "peer_weights": "random (real shapes; speed does not depend on weight values)",
                          "systems": results}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
