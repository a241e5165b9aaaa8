"""The peer side of para's peer benchmark: the same workloads through transformers + PEFT.

Run by bench/peer/run.mjs (which alternates it with para's own benchmarks and prints para ÷ peer);
by hand:

    python bench/peer/peer.py train --backbone assets/backbone --batches BATCHES.json
    python bench/peer/peer.py model
    python bench/peer/peer.py multitenant --lora-rank 12

Prints one JSON object on stdout. Workloads, matching para's CLI benchmarks:

  train        one AdamW update (lr 1e-6) on the bundled backbone: PEFT LoRA r=8 on q_proj and
               v_proj (alpha 16, no dropout), and full fine-tuning; on the two batches of
               `para bench train` (16 task examples, 8 packed rows of 256), exported by run.mjs
               as JSON so both sides train on the same token ids, attention masks, targets and
               loss weights. The loss is para's: cross-entropy on the given next-token targets,
               weighted, divided by the loss tokens; gradients clipped to global norm 1
               (para's Trainer default, as HF's Trainer), AdamW without weight decay. Time: median update (warm-up calls for ~3 s
               first, then repetitions for ~6 s, 3 to 20), as para's medianMs.
  model        `para bench model`'s config (d 512, 8 layers, d_ff 1376, 8 heads, vocab 4096,
               random init): prefill of B x 64 tokens and 64 greedy decode steps over the KV
               cache, at batch 1 and 32. Decode is a plain loop over past_key_values (argmax,
               ids read back each step, as para's decode); `generate` (which adds logits
               processors and stopping criteria) is timed too and reported beside it. Time:
               medians of 3 rounds of [prefill, decode] after 2 untimed ones, as para's bench.
  multitenant  `para bench multitenant`: the same config, 32 rows, each its own LoRA adapter on
               q_proj + v_proj (rank given, random non-zero factors), mixed in one batch with
               PEFT's `adapter_names`; prompt 64, 64 greedy decode steps. The bare model's
               figures in the same run for reference.

Threads: torch's default (one per core). Never part of `pnpm test`.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

BENCH_CONFIG = dict(
    vocab_size=4096,
    hidden_size=512,
    intermediate_size=1376,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=8,
    max_position_embeddings=2048,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    tie_word_embeddings=False,
    attention_bias=False,
    mlp_bias=False,
)


def median_ms(fn, budget_ms=6000.0, min_reps=3, max_reps=20, warmup_ms=3000.0):
    """Median milliseconds of fn() after warm-up calls filling warmup_ms (as para's medianMs)."""
    warm_start = time.perf_counter()
    fn()
    while (time.perf_counter() - warm_start) * 1000 < warmup_ms:
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < max_reps and (
        len(times) < min_reps or (time.perf_counter() - start) * 1000 < budget_ms
    ):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench_config_model(seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(**BENCH_CONFIG)
    model = LlamaForCausalLM(config).float().eval()
    return model


def train(args):
    import peft

    with open(args.batches, encoding="utf-8") as f:
        batches = json.load(f)
    rows = []

    def load_backbone():
        m = LlamaForCausalLM.from_pretrained(args.backbone, dtype=torch.float32)
        m.train()
        # para has no dropout; neither has the bundled backbone's config.
        return m

    def tensors(b):
        ids = torch.tensor(b["ids"], dtype=torch.long)
        mask = None if b["attentionMask"] is None else torch.tensor(b["attentionMask"], dtype=torch.long)
        targets = torch.tensor(b["targets"], dtype=torch.long)
        weights = torch.tensor(b["weights"], dtype=torch.float32)
        return ids, mask, targets, weights, b["lossTokens"]

    setups = [
        ("PEFT LoRA r=8 (q,v)", "lora"),
        ("full fine-tuning", "full"),
    ]
    for label, kind in setups:
        model = load_backbone()
        if kind == "lora":
            cfg = peft.LoraConfig(
                r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], bias="none"
            )
            model = peft.get_peft_model(model, cfg)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-6, weight_decay=0.0)
        for workload, b in batches.items():
            ids, mask, targets, weights, loss_tokens = tensors(b)

            def step():
                logits = model(input_ids=ids, attention_mask=mask).logits  # [B, T, V]
                nll = F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), targets, reduction="none"
                )
                loss = (nll * weights).sum() / loss_tokens
                loss.backward()
                # para's Trainer clips to global norm 1 by default (as HF's Trainer does)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)

            ms = median_ms(step)
            rows.append(
                {
                    "method": label,
                    "workload": workload,
                    "batch": f"{ids.shape[0]}x{ids.shape[1]}",
                    "ms": ms,
                    "tokensPerSec": b["tokens"] / ms * 1000,
                }
            )
            log(f"{label:22} {workload:18} {ms:8.1f} ms/update {rows[-1]['tokensPerSec']:8.0f} tok/s")
        del model, opt
    return {"rows": rows}


def greedy_loop(model, ids, steps, **kw):
    """Prefill ids, then `steps` greedy decode steps; (prefill s, decode s)."""
    t0 = time.perf_counter()
    out = model(input_ids=ids, use_cache=True, **kw)
    nxt = out.logits[:, -1, :].argmax(-1)
    nxt.tolist()
    t1 = time.perf_counter()
    past = out.past_key_values
    for _ in range(steps):
        out = model(input_ids=nxt[:, None], past_key_values=past, use_cache=True, **kw)
        past = out.past_key_values
        nxt = out.logits[:, -1, :].argmax(-1)
        nxt.tolist()  # read back each step, as sampling must
    return t1 - t0, time.perf_counter() - t1


def prompts(batch, length, vocab):
    # para bench model's prompt ids: (1 + b*131 + t*17) % vocab
    return torch.tensor(
        [[(1 + b * 131 + t * 17) % vocab for t in range(length)] for b in range(batch)],
        dtype=torch.long,
    )


def model_bench(args):
    model = bench_config_model()
    P, N = args.prompt_length, args.decode_steps
    rows = []
    with torch.inference_mode():
        for B in args.batch:
            ids = prompts(B, P, BENCH_CONFIG["vocab_size"])
            # warm-up: `warmup` untimed rounds, as `para bench model` does (its JavaScript needs
            # them; PyTorch is given the same), and one untimed `generate`
            for _ in range(args.warmup):
                greedy_loop(model, ids, N)
            pre, dec = [], []
            for _ in range(args.reps):
                p, d = greedy_loop(model, ids, N)
                pre.append(p)
                dec.append(d)
            gen = []
            for g in range(1 + max(1, args.reps // 2)):
                t0 = time.perf_counter()
                model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=N + 1,
                    min_new_tokens=N + 1,
                    do_sample=False,
                    pad_token_id=0,
                )
                if g > 0:
                    gen.append(time.perf_counter() - t0)
            prefill_s = statistics.median(pre)
            decode_s = statistics.median(dec)
            generate_decode_s = max(1e-9, statistics.median(gen) - prefill_s)
            rows.append({"phase": "prefill", "batch": B, "tokensPerSecond": B * P / prefill_s})
            rows.append({"phase": "decode", "batch": B, "tokensPerSecond": B * N / decode_s})
            rows.append(
                {"phase": "decode (generate)", "batch": B, "tokensPerSecond": B * N / generate_decode_s}
            )
            log(
                f"batch {B}: prefill {B * P / prefill_s:8.0f} tok/s, decode {B * N / decode_s:8.1f} tok/s"
                f" (generate {B * N / generate_decode_s:8.1f})"
            )
    return {"rows": rows}


def multitenant(args):
    import peft

    base = bench_config_model()
    B, P, N = args.batch_size, args.prompt_length, args.new_tokens
    ids = prompts(B, P, BENCH_CONFIG["vocab_size"])
    cfg = peft.LoraConfig(
        r=args.lora_rank,
        lora_alpha=2 * args.lora_rank,
        lora_dropout=0.0,
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,  # random non-zero B: an adapter that changes the output
    )
    torch.manual_seed(1)
    model = peft.get_peft_model(base, cfg, adapter_name="t0")
    for i in range(1, B):
        model.add_adapter(f"t{i}", cfg)
    model.eval()
    names = [f"t{i}" for i in range(B)]
    result = {}
    with torch.inference_mode():
        # warm-up: one untimed round of each, as `para bench multitenant` does
        greedy_loop(model, ids, N, adapter_names=names)
        with model.disable_adapter():
            greedy_loop(model, ids, N)
        timings = {"lora": [], "base": []}
        for _ in range(args.rounds):
            timings["lora"].append(greedy_loop(model, ids, N, adapter_names=names))
            with model.disable_adapter():
                timings["base"].append(greedy_loop(model, ids, N))
        for k, ts in timings.items():
            dec = min(d for _, d in ts)
            pre = min(p for p, _ in ts)
            result[k] = B * N / dec
            result[f"{k}Prefill"] = B * P / pre
            log(f"{k}: decode {B * N / dec:8.1f} tok/s, prefill {B * P / pre:8.0f} tok/s")
    result["loraVsBase"] = result["lora"] / result["base"]
    result["loraRank"] = args.lora_rank
    return result


def log(s):
    print(s, file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="workload", required=True)
    t = sub.add_parser("train")
    t.add_argument("--backbone", required=True)
    t.add_argument("--batches", required=True, help="JSON of the batches (written by run.mjs)")
    m = sub.add_parser("model")
    m.add_argument("--batch", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32])
    m.add_argument("--prompt-length", type=int, default=64)
    m.add_argument("--decode-steps", type=int, default=64)
    m.add_argument("--reps", type=int, default=3)
    m.add_argument("--warmup", type=int, default=2)
    mt = sub.add_parser("multitenant")
    mt.add_argument("--batch-size", type=int, default=32)
    mt.add_argument("--prompt-length", type=int, default=64)
    mt.add_argument("--new-tokens", type=int, default=64)
    mt.add_argument("--lora-rank", type=int, required=True)
    mt.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    import peft

    info = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }
    run = {"train": train, "model": model_bench, "multitenant": multitenant}[args.workload]
    out = run(args)
    print(json.dumps({"workload": args.workload, "peer": info, **out}))


if __name__ == "__main__":
    main()
