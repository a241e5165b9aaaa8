#!/usr/bin/env python3
"""PEFT fixtures whose target_modules are dotted module paths, for peft-paths.test.ts.

Uses the backbone of make_peft_goldens.py (fixtures/base: a tiny random LlamaForCausalLM, 2
layers, hidden 32) and saves three adapters with PEFT's save_pretrained, B / vectors random so
the adapters are far from the identity:

  fixtures/lora-all-linear/  LoraConfig(target_modules="all-linear", r=2, alpha=4,
                             init_lora_weights=False). PEFT expands "all-linear" to the full
                             module names (model.layers.0.self_attn.q_proj, ... 14 of them:
                             fewer than 20, so PEFT does not shorten them to suffixes) and
                             writes those into adapter_config.json.
  fixtures/lora-paths/       LoraConfig(target_modules=["model.layers.1.self_attn.q_proj",
                             "model.layers.0.mlp.down_proj"], r=2, alpha=2): exactly those two.
  fixtures/ia3-paths/        IA3Config(target_modules = k_proj, v_proj, down_proj of both layers
                             as full paths, feedforward_modules = both down_proj paths).
  fixtures/paths-goldens.safetensors
      lora-all-linear_logits, lora-paths_logits, ia3-paths_logits  F32 [B, T, V] on the
      input_ids of goldens.safetensors.

Run (never from the tests):
  python3 -m venv /tmp/venv-peft && /tmp/venv-peft/bin/pip install torch transformers peft safetensors
  /tmp/venv-peft/bin/python make_peft_paths.py
(made with torch 2.13.0+cpu, transformers 5.18.0, peft 0.21.0)
"""

import copy
import json
import os
import shutil

import peft
import torch
import transformers
from peft import IA3Config, LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

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
    # The backbone was loaded from a local path; keep that path out of the fixture.
    cfg_file = os.path.join(d, "adapter_config.json")
    with open(cfg_file) as f:
        cfg = json.load(f)
    cfg["base_model_name_or_path"] = None
    with open(cfg_file, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(os.path.join(d, "adapter_model.safetensors"), 0o644)


def main():
    torch.manual_seed(1)
    base = LlamaForCausalLM.from_pretrained(os.path.join(OUT, "base"), attn_implementation="eager").float().eval()
    goldens = load_file(os.path.join(OUT, "goldens.safetensors"))
    ids = goldens["input_ids"].long()
    assert torch.allclose(logits(base, ids), goldens["base_logits"], atol=1e-5), "fixtures/base changed"
    out = {}

    lora = get_peft_model(copy.deepcopy(base), LoraConfig(r=2, lora_alpha=4, target_modules="all-linear", init_lora_weights=False)).eval()
    save(lora, "lora-all-linear")
    out["lora-all-linear_logits"] = logits(lora, ids)

    two = ["model.layers.1.self_attn.q_proj", "model.layers.0.mlp.down_proj"]
    lp = get_peft_model(copy.deepcopy(base), LoraConfig(r=2, lora_alpha=2, target_modules=two))
    with torch.no_grad():
        for name, p in lp.named_parameters():
            if "lora_B" in name:
                p.copy_(0.5 * torch.randn_like(p))
    lp.eval()
    save(lp, "lora-paths")
    out["lora-paths_logits"] = logits(lp, ids)

    paths = [f"model.layers.{i}.{m}" for i in range(2) for m in ["self_attn.k_proj", "self_attn.v_proj", "mlp.down_proj"]]
    ia3 = get_peft_model(copy.deepcopy(base), IA3Config(target_modules=paths, feedforward_modules=[p for p in paths if "down_proj" in p]))
    with torch.no_grad():
        for name, p in ia3.named_parameters():
            if "ia3_l" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
    ia3.eval()
    save(ia3, "ia3-paths")
    out["ia3-paths_logits"] = logits(ia3, ids)

    save_file(out, os.path.join(OUT, "paths-goldens.safetensors"), metadata={
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    })
    os.chmod(os.path.join(OUT, "paths-goldens.safetensors"), 0o644)
    for k, v in out.items():
        print(f"{k}: max |Δ| from base {float((v - goldens['base_logits']).abs().max()):.4f}")


if __name__ == "__main__":
    main()
