#!/usr/bin/env python3
"""PEFT goldens for @para/adapters, computed independently with Hugging Face transformers + PEFT.

Builds a tiny random LlamaForCausalLM, saves it in the Hugging Face layout (save_pretrained:
config.json + model.safetensors), wraps copies of it with PEFT LoRA and IA3 adapters whose weights
are NOT the identity, saves each adapter with PeftModel.save_pretrained (adapter_config.json +
adapter_model.safetensors, PEFT's own names and shapes), and stores the logits each computes.

  fixtures/base/             the backbone (F32, untied head, GQA 4 heads / 2 kv heads, 2 layers)
  fixtures/lora/             LoRA r=4, alpha=8 on all seven projections, init_lora_weights=False
                             (A and B both random, so B·A ≠ 0)
  fixtures/lora-qv-layer1/   LoRA r=2, alpha=6, use_rslora, q_proj + v_proj of layer 1 only
                             (layers_to_transform), B perturbed from zero
  fixtures/ia3/              IA3 with PEFT's llama defaults (k_proj, v_proj, down_proj as the
                             feed-forward module), vectors 1 + 0.3·N(0, 1)
  fixtures/goldens.safetensors
      input_ids        I32 [B, T]
      base_logits      F32 [B, T, V]   the bare backbone
      lora_logits      F32 [B, T, V]   PeftModel(lora) forward
      lora_merged_logits F32 [B, T, V] the same after merge_and_unload (cross-check of PEFT itself)
      lora-qv-layer1_logits, ia3_logits  F32 [B, T, V]

Logits are float32, eager attention, no padding (every row real), so position ids are 0..T-1.
PEFT's README.md model cards are deleted to keep the fixtures small.

Run (never from the tests):
  python3 -m venv /tmp/venv-peft && /tmp/venv-peft/bin/pip install torch transformers peft safetensors
  /tmp/venv-peft/bin/python make_peft_goldens.py
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
from transformers import LlamaConfig, LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
IDS = [
    [1, 17, 43, 9, 5, 64, 23, 80, 3],
    [1, 90, 7, 7, 31, 88, 12, 60, 41],
]


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float().contiguous()


def clean(d):
    readme = os.path.join(d, "README.md")
    if os.path.exists(readme):
        os.remove(readme)


def main():
    torch.manual_seed(0)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        initializer_range=0.1,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    base = LlamaForCausalLM(config).float().eval()
    # RMSNorm weights away from 1, so a loader or an adapter that skipped them would show.
    with torch.no_grad():
        for name, p in base.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
    base.save_pretrained(os.path.join(OUT, "base"), safe_serialization=True)
    ids = torch.tensor(IDS, dtype=torch.long)
    out = {"input_ids": ids.to(torch.int32), "base_logits": logits(base, ids)}

    # LoRA on every projection, A and B random (init_lora_weights=False keeps nn.Linear's init).
    lora_cfg = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    lora = get_peft_model(copy.deepcopy(base), lora_cfg).eval()
    lora.save_pretrained(os.path.join(OUT, "lora"))
    clean(os.path.join(OUT, "lora"))
    out["lora_logits"] = logits(lora, ids)
    out["lora_merged_logits"] = logits(lora.merge_and_unload(), ids)

    # LoRA on q/v of layer 1 only, rsLoRA scaling, B perturbed from its zero init.
    qv_cfg = LoraConfig(
        r=2,
        lora_alpha=6,
        lora_dropout=0.1,
        target_modules=["q_proj", "v_proj"],
        layers_to_transform=[1],
        use_rslora=True,
        task_type="CAUSAL_LM",
    )
    qv = get_peft_model(copy.deepcopy(base), qv_cfg)
    with torch.no_grad():
        for name, p in qv.named_parameters():
            if "lora_B" in name:
                p.copy_(0.5 * torch.randn_like(p))
    qv.eval()
    qv.save_pretrained(os.path.join(OUT, "lora-qv-layer1"))
    clean(os.path.join(OUT, "lora-qv-layer1"))
    out["lora-qv-layer1_logits"] = logits(qv, ids)

    # IA3 with PEFT's llama defaults; vectors perturbed from their init of 1.
    ia3 = get_peft_model(copy.deepcopy(base), IA3Config(task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in ia3.named_parameters():
            if "ia3_l" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
    ia3.eval()
    ia3.save_pretrained(os.path.join(OUT, "ia3"))
    clean(os.path.join(OUT, "ia3"))
    out["ia3_logits"] = logits(ia3, ids)

    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, "goldens.safetensors"), metadata={
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    })
    for k, v in out.items():
        if k.endswith("_logits") and k != "base_logits":
            print(f"{k}: max |Δ| from base {float((v - out['base_logits']).abs().max()):.4f}")
    print("merged vs unmerged LoRA:", float((out["lora_merged_logits"] - out["lora_logits"]).abs().max()))
    for d in ["lora", "lora-qv-layer1", "ia3"]:
        with open(os.path.join(OUT, d, "adapter_config.json")) as f:
            cfg = json.load(f)
        print(d, cfg["peft_type"], cfg.get("target_modules"), cfg.get("feedforward_modules"))


if __name__ == "__main__":
    main()
