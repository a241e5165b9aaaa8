#!/usr/bin/env python3
"""PEFT fixtures for LoRA on the embedding and the output head, and modules_to_save, for
lora-edges.test.ts.

Uses the Llama backbone of make_peft_goldens.py (fixtures/base, untied head) and a tied copy of it
(fixtures/base-tied: the same weights with tie_word_embeddings, lm_head = embed_tokens). Adapters
are saved with PEFT's save_pretrained; everything trainable is random, so none is the identity:

  fixtures/lora-embed-head/       Llama; LoRA r=4, alpha=8 on q_proj, embed_tokens (PEFT's
                                  lora_embedding_A [r, V] / lora_embedding_B [d, r]) and lm_head,
                                  rank_pattern {"lm_head": 2}. PEFT also saves the two base
                                  layers (`….embed_tokens.base_layer.weight`, `lm_head.base_layer.weight`,
                                  save_embedding_layers), equal to the backbone's
  fixtures/lora-mts/              Llama; LoRA r=2 on q_proj, v_proj with modules_to_save
                                  ["lm_head", "embed_tokens"] (saved as `base_model.model.lm_head.weight`,
                                  `base_model.model.model.embed_tokens.weight`), the copies perturbed
  fixtures/lora-embed-head-tied/  base-tied; LoRA r=2 on embed_tokens and lm_head (PEFT warns and
                                  adapts each module separately: the head's delta does not reach
                                  the embedding, nor the embedding's the head)
  fixtures/lora-mts-head-tied/    base-tied; LoRA r=2 on v_proj with modules_to_save ["lm_head"]
                                  (the copy is the head's alone; the embedding stays the backbone's)
  fixtures/lora-embed-head-gemma3/ packages/model's gemma3-bf16 fixture (tied, embeddings × √d,
                                  final soft-capping), in float32; LoRA r=2 on q_proj, embed_tokens,
                                  lm_head (PEFT scales the embedding delta by embed_scale)
  fixtures/lora-mts-gemma3/       the same backbone; LoRA r=2 on v_proj, modules_to_save ["embed_tokens"]
  fixtures/lora-edges-goldens.safetensors
      input_ids                 I32 [B, T] (those of goldens.safetensors)
      base-tied_logits          F32 [B, T, V]
      <adapter>_logits          F32 [B, T, V] PeftModel forward
      gemma3_input_ids          I32 [B, T'] (those of make_peft_arch.py)

Run (never from the tests):
  python3 -m venv /tmp/venv-peft && /tmp/venv-peft/bin/pip install torch transformers peft safetensors
  /tmp/venv-peft/bin/python make_peft_lora_edges.py
"""

import json
import os
import shutil

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float().contiguous()


def save(model, name):
    d = os.path.join(OUT, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    model.save_pretrained(d)
    readme = os.path.join(d, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    cfg_file = os.path.join(d, "adapter_config.json")
    with open(cfg_file) as f:
        cfg = json.load(f)
    cfg["base_model_name_or_path"] = None
    with open(cfg_file, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(os.path.join(d, "adapter_model.safetensors"), 0o644)


def perturb(model, std=0.5):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                if "lora_B" in name or "lora_embedding" in name:
                    p.copy_(std * torch.randn_like(p))
                else:
                    p.copy_(p + std * torch.randn_like(p))


def load(name):
    return LlamaForCausalLM.from_pretrained(os.path.join(OUT, name), attn_implementation="eager").float().eval()


def main():
    torch.manual_seed(5)
    goldens = load_file(os.path.join(OUT, "goldens.safetensors"))
    ids = goldens["input_ids"].long()
    base = load("base")
    assert torch.allclose(logits(base, ids), goldens["base_logits"], atol=1e-5), "fixtures/base changed"
    out = {"input_ids": goldens["input_ids"]}

    # The tied backbone: base's weights, lm_head = embed_tokens.
    d = os.path.join(OUT, "base-tied")
    tied_cfg = base.config.to_dict()
    tied_cfg["tie_word_embeddings"] = True
    tied = LlamaForCausalLM(type(base.config).from_dict(tied_cfg)).float().eval()
    sd = {k: v for k, v in base.state_dict().items() if k != "lm_head.weight"}
    tied.load_state_dict(sd, strict=False)
    tied.tie_weights()
    assert tied.lm_head.weight.data_ptr() == tied.model.embed_tokens.weight.data_ptr()
    if os.path.isdir(d):
        shutil.rmtree(d)
    tied.save_pretrained(d, safe_serialization=True)
    os.chmod(os.path.join(d, "model.safetensors"), 0o644)
    out["base-tied_logits"] = logits(load("base-tied"), ids)

    def make(name, backbone, cfg):
        m = get_peft_model(load(backbone), LoraConfig(**cfg))
        perturb(m)
        m.eval()
        out[f"{name}_logits"] = logits(m, ids)
        save(m, name)

    make("lora-embed-head", "base", dict(r=4, lora_alpha=8, target_modules=["q_proj", "embed_tokens", "lm_head"], rank_pattern={"lm_head": 2}))
    make("lora-mts", "base", dict(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head", "embed_tokens"]))
    make("lora-embed-head-tied", "base-tied", dict(r=2, lora_alpha=4, target_modules=["embed_tokens", "lm_head"]))
    make("lora-mts-head-tied", "base-tied", dict(r=2, lora_alpha=4, target_modules=["v_proj"], modules_to_save=["lm_head"]))

    # Gemma 3: the embedding scaled by √d inside the module, tied head, soft-capped logits.
    gids = torch.tensor([
        [1, 17, 43, 9, 5, 64, 23, 80, 3, 101, 7, 55],
        [1, 90, 7, 7, 31, 88, 12, 60, 41, 2, 119, 6],
    ], dtype=torch.long)
    out["gemma3_input_ids"] = gids.to(torch.int32)
    gemma = os.path.join(HERE, "..", "..", "..", "model", "test", "goldens", "fixtures", "gemma3-bf16")

    def make_gemma(name, cfg):
        base_model = AutoModelForCausalLM.from_pretrained(gemma, dtype=torch.float32, attn_implementation="eager").eval()
        m = get_peft_model(base_model, LoraConfig(**cfg))
        perturb(m)
        m.eval()
        out[f"{name}_logits"] = logits(m, gids)
        save(m, name)

    make_gemma("lora-embed-head-gemma3", dict(r=2, lora_alpha=4, target_modules=["q_proj", "embed_tokens", "lm_head"]))
    make_gemma("lora-mts-gemma3", dict(r=2, lora_alpha=4, target_modules=["v_proj"], modules_to_save=["embed_tokens"]))

    save_file(out, os.path.join(OUT, "lora-edges-goldens.safetensors"), metadata={
        "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__})
    os.chmod(os.path.join(OUT, "lora-edges-goldens.safetensors"), 0o644)
    print({k: tuple(v.shape) for k, v in out.items()})


if __name__ == "__main__":
    main()
