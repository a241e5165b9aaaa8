#!/usr/bin/env python3
"""Goldens for the architectures beyond Llama/Mistral/Qwen2 (issue 14), computed independently
with Hugging Face transformers, in the same format as make_goldens.py (whose helpers it reuses):
fixtures/<name>/{config.json, model.safetensors, goldens.safetensors, goldens.json}.

It writes only its own fixture directories (make_goldens.py's are left alone):

  qwen3-bf16        Qwen3: per-head q_norm/k_norm, head_dim 32 != hidden/heads, attention_bias,
                    stored as BF16
  qwen3-yarn        Qwen3 with yarn RoPE scaling (factor 4, original_max_position_embeddings 64,
                    beta_fast 16: frequencies ramped between interpolation and extrapolation,
                    cos/sin scaled by 0.1 ln 4 + 1), F16, transformers 4 config (rope_scaling)
  llama-dynamic     Llama with dynamic (NTK) RoPE scaling, factor 2, max_position_embeddings 8:
                    every call longer than 8 raises theta with its length (transformers
                    recomputes the frequencies each forward; cached keys keep theirs), BF16
  qwen3-sliding     Qwen3 with use_sliding_window, window 4, max_window_layers 1 (layer 0 full,
                    layers 1-2 sliding); config.json in the transformers 4 spelling without
                    layer_types, so max_window_layers decides
  qwen2-sliding     Qwen2 with use_sliding_window, window 5, explicit layer_types
                    [full, sliding, sliding]
  mistral-sliding   Mistral with sliding_window 4 on every layer
  gemma2-f16        Gemma 2: (1 + w) norms, sandwich norms, GeGLU, embeddings x sqrt(d),
                    query_pre_attn_scalar 24 (!= head_dim), attention soft-capping 2.0 and final
                    soft-capping 3.0 (both small enough to change the numbers), layers
                    [sliding, full, sliding] with window 4, tied embeddings, stored as F16
  smollm3           SmolLM3 (F16): 4 layers, no_rope_layer_interval 2 (layers 1 and 3 without RoPE),
                    use_sliding_window with window 4 (transformers makes the no-RoPE layers
                    sliding), attention and MLP biases, tied embeddings
  phi3              Phi-3: fused qkv_proj and gate_up_proj, partial_rotary_factor 0.5 (RoPE on 8
                    of 16 head dims), sliding_window 5 on every layer, BF16, transformers 4
                    config (top-level partial_rotary_factor)
  phi3-longrope     Phi-3 with longrope (short/long factors, original_max_position_embeddings 12,
                    max_position_embeddings 48 so attention scaling sqrt(1 + ln 4 / ln 12)),
                    partial_rotary_factor 0.75: the prompt batch (10 slots) uses the short
                    factors, generation switches to the long ones at 13 slots; the greedy golden
                    is the cache-free loop (every key recomputed with the long factors, what
                    Phi-3's generate means to do; transformers 5.18's generate is wrong there,
                    its ids are recorded beside)
  olmo2-bf16        OLMo 2: no input norm, post-attention / post-feed-forward norms, q_norm and
                    k_norm over the whole projection, stored as BF16, transformers 4 config
  gemma3-bf16       Gemma 3 text: qk-norm, 4 layers from sliding_window_pattern 3 ([sliding,
                    sliding, full, sliding]), window 5, global RoPE theta 1e6 with linear
                    scaling x2, local theta 1e4 (rope_local_base_freq), final soft-capping 4.0,
                    tied embeddings, stored as BF16 (transformers 5's nested rope_parameters)

Every prompt row plus its 8 new tokens is longer than every window (sequences up to 18 slots),
so the windows matter in the logits and in cached generation. Norm weights and biases are
randomised (Gemma's (1 + w) norms around w = 0), so a loader that drops one fails.

Run (never from the tests):  /tmp/venv/bin/python make_goldens_arch.py [name ...]
(names: only those fixtures; default all)
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
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Olmo2Config,
    Olmo2ForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    SmolLM3Config,
    SmolLM3ForCausalLM,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_goldens import (  # noqa: E402
    COMMON,
    MAX_NEW,
    OUT,
    PAD,
    PROMPTS,
    greedy_reference,
    left_pad,
    position_ids,
    trim_after_eos,
)

GEMMA = dict(COMMON, pad_token_id=0, bos_token_id=1, eos_token_id=2)

MODELS = [
    dict(
        name="qwen3-bf16",
        cls=Qwen3ForCausalLM,
        config=Qwen3Config(**COMMON, head_dim=32, attention_bias=True, rope_theta=1000000.0),
        dtype="bfloat16",
        seed=11,
    ),
    dict(
        name="qwen3-yarn",
        cls=Qwen3ForCausalLM,
        config=Qwen3Config(
            **COMMON,
            head_dim=16,
            rope_parameters={
                "rope_type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 64,
                "beta_fast": 16.0,
                "rope_theta": 10000.0,
            },
        ),
        dtype="float16",
        seed=19,
        v4_config=True,
    ),
    dict(
        name="llama-dynamic",
        cls=LlamaForCausalLM,
        config=LlamaConfig(
            **{**COMMON, "max_position_embeddings": 8},
            rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0},
        ),
        dtype="bfloat16",
        seed=20,
        cached_differs=True,
    ),
    dict(
        name="qwen3-sliding",
        cls=Qwen3ForCausalLM,
        config=Qwen3Config(
            **{**COMMON, "num_hidden_layers": 3},
            head_dim=16,
            use_sliding_window=True,
            sliding_window=4,
            max_window_layers=1,
        ),
        dtype="float32",
        seed=22,
        v4_config=True,
    ),
    dict(
        name="qwen2-sliding",
        cls=Qwen2ForCausalLM,
        config=Qwen2Config(
            **{**COMMON, "num_hidden_layers": 3},
            use_sliding_window=True,
            sliding_window=5,
            layer_types=["full_attention", "sliding_attention", "sliding_attention"],
        ),
        dtype="float32",
        seed=13,
    ),
    dict(
        name="mistral-sliding",
        cls=MistralForCausalLM,
        config=MistralConfig(**COMMON, sliding_window=4),
        dtype="float32",
        seed=14,
    ),
    dict(
        name="gemma2-f16",
        cls=Gemma2ForCausalLM,
        config=Gemma2Config(
            **{**GEMMA, "num_hidden_layers": 3},
            head_dim=32,
            query_pre_attn_scalar=24,
            attn_logit_softcapping=2.0,
            final_logit_softcapping=3.0,
            sliding_window=4,
        ),
        dtype="float16",
        seed=15,
    ),
    dict(
        name="gemma3-bf16",
        cls=Gemma3ForCausalLM,
        config=Gemma3TextConfig(
            **{**GEMMA, "num_hidden_layers": 4},
            head_dim=16,
            query_pre_attn_scalar=16,
            sliding_window=5,
            sliding_window_pattern=3,
            final_logit_softcapping=4.0,
            rope_parameters={
                "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            },
        ),
        dtype="bfloat16",
        seed=16,
    ),
    dict(
        name="smollm3",
        cls=SmolLM3ForCausalLM,
        config=SmolLM3Config(
            **{**COMMON, "num_hidden_layers": 4, "pad_token_id": 0},
            no_rope_layer_interval=2,
            use_sliding_window=True,
            sliding_window=4,
            mlp_bias=True,
            attention_bias=True,
        ),
        dtype="float16",
        seed=27,
    ),
    dict(
        name="phi3",
        cls=Phi3ForCausalLM,
        config=Phi3Config(
            **{**COMMON, "pad_token_id": 0},
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
            sliding_window=5,
        ),
        dtype="bfloat16",
        seed=21,
        v4_config=True,
    ),
    dict(
        name="phi3-longrope",
        cls=Phi3ForCausalLM,
        config=Phi3Config(
            **{**COMMON, "pad_token_id": 0, "max_position_embeddings": 48},
            original_max_position_embeddings=12,
            rope_parameters={
                "rope_type": "longrope",
                "rope_theta": 10000.0,
                "partial_rotary_factor": 0.75,
                "short_factor": [1.0, 1.1, 1.3, 1.7, 2.3, 3.1],
                "long_factor": [1.0, 4.0, 16.0, 64.0, 256.0, 1024.0],
            },
        ),
        dtype="float32",
        seed=25,
        reference_golden=True,
    ),
    dict(
        name="olmo2-bf16",
        cls=Olmo2ForCausalLM,
        config=Olmo2Config(**{**COMMON, "pad_token_id": 0}, rope_theta=500000.0),
        dtype="bfloat16",
        seed=18,
        v4_config=True,
    ),
]


def build(spec):
    torch.manual_seed(spec["seed"])
    cfg = spec["config"]
    model = spec["cls"](cfg).eval()
    gemma = cfg.model_type.startswith("gemma")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                # Gemma applies (1 + w): randomise around w = 0 (scale 1 +- 0.2) as others around 1.
                p.copy_((0.0 if gemma else 1.0) + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(cfg.initializer_range * torch.randn_like(p))
            if spec["dtype"] != "float32":
                p.copy_(p.to(getattr(torch, spec["dtype"])).float())
        if cfg.tie_word_embeddings:
            assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


def to_v4(d):
    """transformers 4 spelling: top-level rope_theta / rope_scaling, torch_dtype, and (here) no
    layer_types, so the v4 fields (max_window_layers) decide which layers slide."""
    path = os.path.join(d, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    rp = cfg.pop("rope_parameters")
    cfg["rope_theta"] = rp.pop("rope_theta")
    if "partial_rotary_factor" in rp:
        cfg["partial_rotary_factor"] = rp.pop("partial_rotary_factor")
    cfg["rope_scaling"] = rp if rp.get("rope_type", "default") != "default" else None
    cfg["torch_dtype"] = cfg.pop("dtype")
    cfg.pop("layer_types", None)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def main():
    torch.set_grad_enabled(False)
    ids, mask = left_pad(PROMPTS)
    windows = []
    only = set(sys.argv[1:])
    for spec in MODELS:
        if only and spec["name"] not in only:
            continue
        model = build(spec)
        model.config._attn_implementation = "eager"
        d = os.path.join(OUT, spec["name"])
        if os.path.isdir(d):
            shutil.rmtree(d)
        to_save = model if spec["dtype"] == "float32" else copy.deepcopy(model).to(getattr(torch, spec["dtype"]))
        to_save.save_pretrained(d)
        gc = os.path.join(d, "generation_config.json")
        if os.path.exists(gc):
            os.remove(gc)
        if spec.get("v4_config"):
            to_v4(d)
        # What transformers itself reads back from the file is what we test against.
        reloaded = spec["cls"].from_pretrained(d, attn_implementation="eager", dtype=torch.float32).eval()
        a = reloaded(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits
        assert torch.equal(a, logits), (spec["name"], float((a - logits).abs().max()))
        lt = getattr(reloaded.config, "layer_types", None)
        sw = getattr(reloaded.config, "sliding_window", None)
        windows.append((spec["name"], sw, lt))

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
        if spec.get("reference_golden"):
            # transformers 5.18's Phi-3 generate is wrong past original_max_position_embeddings:
            # Phi3ForCausalLM.prepare_inputs_for_generation drops the cache to recompute it
            # with the long factors, but input_ids are already cut to the last token, so that
            # token (and every later one: the condition holds again) attends only to itself.
            # What it means to do (recompute every key with the long factors) is what the
            # cache-free loop computes, so that is the golden here; generate's ids are recorded.
            ref_new, margin = greedy_reference(model, ids, mask, eos)
            spec["hf_generate_new_tokens"] = hf_new
            hf_new = ref_new
        elif spec.get("cached_differs"):
            # Dynamic RoPE: transformers' cached generate keeps each key's frequencies, a
            # cache-free loop recomputes them all, so the two differ by design; the golden is
            # generate's, and its margins come from generate's own scores.
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=MAX_NEW,
                do_sample=False,
                num_beams=1,
                pad_token_id=PAD,
                eos_token_id=eos,
                output_logits=True,
                return_dict_in_generate=True,
            )
            margin = float("inf")
            for step, lg in enumerate(out.logits):
                top2 = torch.topk(lg, 2, dim=-1).values
                for b in range(ids.shape[0]):
                    if step < len(hf_new[b]):
                        margin = min(margin, float(top2[b, 0] - top2[b, 1]))
        else:
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
                    "sliding_window": sw,
                    "layer_types": lt,
                    **(
                        {
                            "greedy_source": "cache-free greedy loop (transformers generate is wrong here, see make_goldens_arch.py)",
                            "transformers_generate_new_tokens": spec["hf_generate_new_tokens"],
                        }
                        if spec.get("reference_golden")
                        else {}
                    ),
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
        print(f"{spec['name']}: greedy {hf_new}, min margin {margin:.4f}, window {sw}, layers {lt}")


if __name__ == "__main__":
    main()
