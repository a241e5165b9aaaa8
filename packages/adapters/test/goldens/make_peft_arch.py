#!/usr/bin/env python3
"""PEFT LoRA and IA3 adapters on the architecture fixtures of @para/model, for
peft-arch.test.ts (issue 14).

The backbones are packages/model/test/goldens/fixtures/<name> (made by make_goldens_arch.py,
not copied here), loaded in float32 with eager attention. Per backbone, saved with PEFT's
save_pretrained (README removed, base_model_name_or_path null):

  fixtures/arch-<name>-lora/  LoRA r=2, alpha=4, init_lora_weights=False (A and B random, so
                              B·A ≠ 0) on every projection: q/k/v/o/gate/up/down, and on Phi-3
                              the fused qkv_proj and gate_up_proj (lora_B [fused out, r]) with
                              o_proj and down_proj
  fixtures/arch-phi3-dora/    Phi-3 only: DoRA r=2 on qkv_proj and gate_up_proj, A and B random,
                              magnitudes ‖W + s·B·A‖ · (1 + 0.3·N(0, 1))
  fixtures/arch-<name>-ia3/   IA3 on k_proj, v_proj and down_proj (feed-forward), vectors
                              1 + 0.3·N(0, 1) (not for Phi-3, whose k and v live in qkv_proj)
  fixtures/arch-goldens.safetensors
      input_ids             I32 [B, T]  (no padding; T longer than every sliding window)
      <name>_base_logits    F32 [B, T, V]
      <name>_lora_logits    F32 [B, T, V]  PeftModel forward
      <name>_ia3_logits     F32 [B, T, V]
      phi3_dora_logits      F32 [B, T, V]

Run (never from the tests):
  python3 -m venv /tmp/venv-peft && /tmp/venv-peft/bin/pip install torch transformers peft safetensors
  /tmp/venv-peft/bin/python make_peft_arch.py
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
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
MODELS = os.path.join(HERE, "..", "..", "..", "model", "test", "goldens", "fixtures")
ARCHS = ["qwen3-bf16", "gemma2-f16", "gemma3-bf16", "olmo2-bf16", "smollm3", "phi3"]
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PHI3 = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
IDS = [
    [1, 17, 43, 9, 5, 64, 23, 80, 3, 101, 7, 55],
    [1, 90, 7, 7, 31, 88, 12, 60, 41, 2, 119, 6],
]


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
    # PEFT writes target_modules from a set (in hash order): sorted, so a rerun is the same.
    for k in ["target_modules", "feedforward_modules"]:
        if isinstance(cfg.get(k), list):
            cfg[k] = sorted(cfg[k])
    with open(cfg_file, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(os.path.join(d, "adapter_model.safetensors"), 0o644)


def main():
    torch.manual_seed(0)
    ids = torch.tensor(IDS, dtype=torch.long)
    out = {"input_ids": ids.to(torch.int32)}
    for name in ARCHS:
        base = AutoModelForCausalLM.from_pretrained(
            os.path.join(MODELS, name), dtype=torch.float32, attn_implementation="eager"
        ).eval()
        out[f"{name}_base_logits"] = logits(base, ids)
        phi3 = base.config.model_type == "phi3"
        lora_cfg = LoraConfig(
            r=2,
            lora_alpha=4,
            lora_dropout=0.0,
            target_modules=PHI3 if phi3 else ALL,
            init_lora_weights=False,
            task_type="CAUSAL_LM",
        )
        lora = get_peft_model(copy.deepcopy(base), lora_cfg).eval()
        save(lora, f"arch-{name}-lora")
        out[f"{name}_lora_logits"] = logits(lora, ids)
        if phi3:
            # DoRA on the fused modules: lora_magnitude_vector [fused out], perturbed from ‖W‖.
            dora_cfg = LoraConfig(
                r=2,
                lora_alpha=4,
                lora_dropout=0.0,
                target_modules=["qkv_proj", "gate_up_proj"],
                init_lora_weights=False,
                use_dora=True,
                task_type="CAUSAL_LM",
            )
            dora = get_peft_model(copy.deepcopy(base), dora_cfg)
            with torch.no_grad():
                for n, p in dora.named_parameters():
                    if "lora_magnitude_vector" in n:
                        p.mul_(1 + 0.3 * torch.randn_like(p))
            dora.eval()
            save(dora, f"arch-{name}-dora")
            out[f"{name}_dora_logits"] = logits(dora, ids)
        else:
            ia3_cfg = IA3Config(
                target_modules=["k_proj", "v_proj", "down_proj"],
                feedforward_modules=["down_proj"],
                task_type="CAUSAL_LM",
            )
            ia3 = get_peft_model(copy.deepcopy(base), ia3_cfg)
            with torch.no_grad():
                for n, p in ia3.named_parameters():
                    if "ia3_l" in n:
                        p.copy_(1 + 0.3 * torch.randn_like(p))
            ia3.eval()
            save(ia3, f"arch-{name}-ia3")
            out[f"{name}_ia3_logits"] = logits(ia3, ids)
        for k in ["lora", "ia3", "dora"]:
            v = out.get(f"{name}_{k}_logits")
            if v is not None:
                d = float((v - out[f"{name}_base_logits"]).abs().max())
                print(f"{name} {k}: max |Δ| from base {d:.4f}")
    save_file(
        {k: v.contiguous() for k, v in out.items()},
        os.path.join(OUT, "arch-goldens.safetensors"),
        metadata={
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
    )


if __name__ == "__main__":
    main()
