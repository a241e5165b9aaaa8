#!/usr/bin/env python3
"""Goldens for @para/model, computed independently with Hugging Face transformers.

Builds five tiny random LLaMA-family models with transformers, saves each in the Hugging Face
layout (config.json + model.safetensors, or a sharded index), and stores what transformers
computes for them:

  goldens.safetensors  logits   F32 [B, T, V]  teacher-forced logits of a left-padded batch
                       input_ids I32 [B, T], attention_mask I32 [B, T]
  goldens.json         the same ids and mask as lists, the greedy `generate` output (new tokens
                       per row, HF's pad filler after an EOS removed), settings and versions

Models (directory under fixtures/):
  llama            LlamaConfig, F32, untied lm_head, GQA (4 heads, 2 kv heads)
  llama3-bf16      Llama with rope_scaling llama3 and a list of eos ids (one of them hit), stored as BF16
  qwen2-tied-f16   Qwen2 (q/k/v biases), tied embeddings, stored as F16
  mistral-sharded  Mistral with rope_scaling linear, saved sharded (max_shard_size)
  smollm-tied      SmolLM-style llama: tied embeddings, explicit head_dim != hidden/heads, MQA

llama3-bf16 and mistral-sharded get their config.json rewritten in the transformers 4 spelling
(top-level rope_theta / rope_scaling; mistral with the legacy "type" key), the others keep
transformers 5's rope_parameters, so both config generations are tested.

Weights are randomised beyond HF's init (biases and RMSNorm weights too, so a loader that drops
them fails), with a larger std than HF's default so greedy tokens are far from ties. For the
half-precision models, the float32 weights are first rounded to the storage dtype, so the goldens
are the float32 computation of exactly the stored values and compare tightly.

Logits are computed in float32 with `attn_implementation="eager"` and explicit position ids
`cumsum(mask) - 1` (pads: 1), the convention of HF `generate` and of @para/model (a padded row
equals the row alone). The greedy tokens from `model.generate` are cross-checked here against a
cache-free argmax loop, and the smallest top-1/top-2 logit margin met is recorded.

Run (never from the tests):  python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch \
  transformers safetensors numpy && /tmp/venv/bin/python make_goldens.py
"""

import copy
import json
import os
import shutil
import sys

import numpy as np
import safetensors
import torch
import transformers
from safetensors.torch import save_file
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
PAD = 0
MAX_NEW = 8
PROMPTS = [
    [1, 17, 43, 99, 5, 64, 23],
    [1, 120, 7, 7, 31, 88, 12, 3, 56, 101],
    [1, 9, 77, 44],
]

COMMON = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    initializer_range=0.08,
    bos_token_id=1,
    eos_token_id=2,
)

MODELS = [
    dict(name="llama", cls=LlamaForCausalLM, config=LlamaConfig(**COMMON, rope_theta=10000.0), dtype="float32", seed=1),
    dict(
        name="llama3-bf16",
        cls=LlamaForCausalLM,
        config=LlamaConfig(
            **{**COMMON, "eos_token_id": [2, 0]},
            rope_theta=500000.0,
            rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=32),
        ),
        dtype="bfloat16",
        seed=2,
        v4_config=True,
    ),
    dict(
        name="qwen2-tied-f16",
        cls=Qwen2ForCausalLM,
        config=Qwen2Config(**{**COMMON, "bos_token_id": None}, tie_word_embeddings=True, rope_theta=1000000.0),
        dtype="float16",
        seed=3,
    ),
    dict(
        name="mistral-sharded",
        cls=MistralForCausalLM,
        config=MistralConfig(**COMMON, sliding_window=None, rope_theta=10000.0, rope_scaling=dict(rope_type="linear", factor=2.0)),
        dtype="float32",
        seed=4,
        shard="100KB",
        v4_config=True,
    ),
    dict(
        name="smollm-tied",
        cls=LlamaForCausalLM,
        config=LlamaConfig(**{**COMMON, "num_key_value_heads": 1}, head_dim=32, tie_word_embeddings=True),
        dtype="float32",
        seed=5,
    ),
]


def left_pad(prompts):
    T = max(len(p) for p in prompts)
    ids = [[PAD] * (T - len(p)) + p for p in prompts]
    mask = [[0] * (T - len(p)) + [1] * len(p) for p in prompts]
    return torch.tensor(ids), torch.tensor(mask)


def position_ids(mask):
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 1)


def build(spec):
    torch.manual_seed(spec["seed"])
    cfg = spec["config"]
    model = spec["cls"](cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(cfg.initializer_range * torch.randn_like(p))
            if spec["dtype"] != "float32":
                # Round to the storage dtype: the goldens are float32 maths on the stored values.
                p.copy_(p.to(getattr(torch, spec["dtype"])).float())
        if cfg.tie_word_embeddings:
            assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


def greedy_reference(model, ids, mask, eos):
    """Cache-free greedy loop: full forward each step, argmax of the last position."""
    ids, mask = ids.clone(), mask.clone()
    new = [[] for _ in range(ids.shape[0])]
    done = [False] * ids.shape[0]
    margin = float("inf")
    for _ in range(MAX_NEW):
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits[:, -1, :]
        top2 = torch.topk(logits, 2, dim=-1).values
        nxt = logits.argmax(-1)
        for b in range(ids.shape[0]):
            if not done[b]:
                margin = min(margin, float(top2[b, 0] - top2[b, 1]))
                new[b].append(int(nxt[b]))
                done[b] = int(nxt[b]) in eos
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        if all(done):
            break
    return new, margin


def to_v4_config(d, legacy_type_key):
    """Rewrite config.json in the transformers 4 spelling most Hub checkpoints carry: top-level
    rope_theta and rope_scaling (optionally with the legacy "type" key) instead of v5's
    rope_parameters. transformers 5 reads both (checked right after by reloading)."""
    path = os.path.join(d, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    rp = cfg.pop("rope_parameters")
    cfg["rope_theta"] = rp.pop("rope_theta")
    if rp.get("rope_type", "default") != "default":
        if legacy_type_key:
            rp["type"] = rp.pop("rope_type")
        cfg["rope_scaling"] = rp
    else:
        cfg["rope_scaling"] = None
    cfg["torch_dtype"] = cfg.pop("dtype")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def trim_after_eos(rows, eos):
    out = []
    for r in rows:
        row = []
        for t in r:
            row.append(t)
            if t in eos:
                break
        out.append(row)
    return out


def main():
    torch.set_grad_enabled(False)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    ids, mask = left_pad(PROMPTS)
    for spec in MODELS:
        model = build(spec)
        model.config._attn_implementation = "eager"
        d = os.path.join(OUT, spec["name"])
        # A copy in the storage dtype (casting in place would also round the RoPE buffer).
        to_save = model if spec["dtype"] == "float32" else copy.deepcopy(model).to(getattr(torch, spec["dtype"]))
        kwargs = {"max_shard_size": spec["shard"]} if "shard" in spec else {}
        to_save.save_pretrained(d, **kwargs)
        for extra in ("generation_config.json",):
            if os.path.exists(os.path.join(d, extra)):
                os.remove(os.path.join(d, extra))
        if spec.get("v4_config"):
            to_v4_config(d, legacy_type_key=spec["name"].startswith("mistral"))
            reloaded = spec["cls"].from_pretrained(d, attn_implementation="eager", dtype=torch.float32)
            a = reloaded(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits
            b = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits
            assert torch.equal(a, b), (spec["name"], float((a - b).abs().max()))

        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits
        eos = model.config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        gen = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=MAX_NEW,
            do_sample=False,
            num_beams=1,
            pad_token_id=PAD,
            eos_token_id=eos,
        )
        hf_new = trim_after_eos(gen[:, ids.shape[1]:].tolist(), eos)
        ref_new, margin = greedy_reference(model, ids, mask, eos)
        assert hf_new == ref_new, (spec["name"], hf_new, ref_new)
        assert margin > 1e-3, (spec["name"], margin)

        save_file(
            {
                "logits": logits.float().contiguous(),
                "input_ids": ids.to(torch.int32).contiguous(),
                "attention_mask": mask.to(torch.int32).contiguous(),
            },
            os.path.join(d, "goldens.safetensors"),
            metadata={"format": "pt"},
        )
        with open(os.path.join(d, "goldens.json"), "w") as f:
            json.dump(
                {
                    "model": spec["name"],
                    "storage_dtype": spec["dtype"],
                    "input_ids": ids.tolist(),
                    "attention_mask": mask.tolist(),
                    "position_ids": position_ids(mask).tolist(),
                    "pad_token_id": PAD,
                    "eos_token_ids": eos,
                    "max_new_tokens": MAX_NEW,
                    "greedy_new_tokens": hf_new,
                    "min_greedy_margin": margin,
                    "versions": {
                        "python": sys.version.split()[0],
                        "torch": torch.__version__,
                        "transformers": transformers.__version__,
                        "safetensors": safetensors.__version__,
                        "numpy": np.__version__,
                    },
                },
                f,
                indent=1,
            )
            f.write("\n")
        print(f"{spec['name']}: greedy {hf_new}, min margin {margin:.4f}")


if __name__ == "__main__":
    main()
