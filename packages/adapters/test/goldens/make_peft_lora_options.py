#!/usr/bin/env python3
"""PEFT fixtures for LoRA's further options (rank_pattern / alpha_pattern, DoRA, bias), for
lora-options.test.ts.

Uses the Llama backbone of make_peft_goldens.py (fixtures/base) and builds a second tiny random
backbone with projection biases, a Qwen2ForCausalLM (q/k/v biased, o and the MLP not), whose
biases are randomised so they matter. Adapters are saved with PEFT's save_pretrained; B,
magnitudes and trained biases are random, so none is near the identity:

  fixtures/base-qwen2/          Qwen2 backbone (F32, untied head, GQA 4/2 heads, 2 layers)
  fixtures/lora-rank-pattern/   Llama; LoRA r=2, alpha=4 on all seven projections with
                                rank_pattern {"layers.1.self_attn.q_proj": 6, "q_proj": 4 (layer 1's q
                                takes 6: the first matching key wins; PEFT writes the keys sorted,
                                so this order survives its save), "layers\\.[01]\\.mlp\\.up_proj": 5,
                                "model.layers.1.mlp.down_proj": 3} and alpha_pattern {"k_proj": 16,
                                "^model.layers.1.self_attn.o_proj": 1, "gate": 7 (matches nothing:
                                a key must match a whole dotted tail)}
  fixtures/lora-dora/           Llama; DoRA (use_dora) r=4, alpha=8 on q, v, o, up, down,
                                alpha_pattern {"v_proj": 2}; magnitudes ·(1 + 0.3·N(0, 1))
  fixtures/lora-dora-qwen2/     Qwen2; DoRA r=2, alpha=4 on q, k, v, o (the bias stays outside
                                the magnitude scaling)
  fixtures/lora-bias-all-qwen2/ Qwen2; LoRA r=2 on q, o with bias="all": every bias of the model
                                trained (k and v too), here perturbed
  fixtures/lora-bias-dora-qwen2/ Qwen2; DoRA r=2 on q, k, o with bias="lora_only": the biases of
                                the adapted projections (q, k) trained
  fixtures/lora-options-goldens.safetensors
      input_ids                 I32 [B, T] (those of goldens.safetensors)
      base-qwen2_logits         F32 [B, T, V] the bare Qwen2 backbone
      <adapter>_logits          F32 [B, T, V] PeftModel forward
      <adapter>_merged_logits   F32 [B, T, V] after merge_and_unload (PEFT's own cross-check)
      lora-dora_grad.<tensor>   F32 gradients of mean(logits²) wrt every trainable tensor of the
                                DoRA adapter (PEFT detaches the weight norm: these are not the
                                finite-difference gradients of the function for A and B)

Run (never from the tests):
  python3 -m venv /tmp/venv-peft && /tmp/venv-peft/bin/pip install torch transformers peft safetensors
  /tmp/venv-peft/bin/python make_peft_lora_options.py
(made with torch 2.13.0+cpu, transformers 5.18.0, peft 0.21.0)
"""

import copy
import json
import os
import shutil

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


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


def perturb(model, what, std=0.5):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if what(name) and p.requires_grad:  # only what the adapter trains (and saves)
                if "magnitude" in name:
                    p.mul_(1 + 0.3 * torch.randn_like(p))
                else:
                    p.copy_(std * torch.randn_like(p) if "lora_B" in name else p + std * torch.randn_like(p))


def main():
    torch.manual_seed(3)
    base = LlamaForCausalLM.from_pretrained(os.path.join(OUT, "base"), attn_implementation="eager").float().eval()
    goldens = load_file(os.path.join(OUT, "goldens.safetensors"))
    ids = goldens["input_ids"].long()
    assert torch.allclose(logits(base, ids), goldens["base_logits"], atol=1e-5), "fixtures/base changed"
    out = {"input_ids": goldens["input_ids"]}

    qcfg = Qwen2Config(
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
    qwen = Qwen2ForCausalLM(qcfg).float().eval()
    with torch.no_grad():
        for name, p in qwen.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.3 * torch.randn_like(p))
    d = os.path.join(OUT, "base-qwen2")
    if os.path.isdir(d):
        shutil.rmtree(d)
    qwen.save_pretrained(d, safe_serialization=True)
    out["base-qwen2_logits"] = logits(qwen, ids)

    def make(name, backbone, cfg, trainable, merged=True):
        m = get_peft_model(copy.deepcopy(backbone), cfg)
        perturb(m, trainable)
        m.eval()
        save(m, name)
        out[f"{name}_logits"] = logits(m, ids)
        if merged:
            out[f"{name}_merged_logits"] = logits(copy.deepcopy(m).merge_and_unload(), ids)
        return m

    make(
        "lora-rank-pattern",
        base,
        LoraConfig(
            r=2,
            lora_alpha=4,
            target_modules=ALL,
            rank_pattern={
                "layers.1.self_attn.q_proj": 6,
                "q_proj": 4,
                r"layers\.[01]\.mlp\.up_proj": 5,
                "model.layers.1.mlp.down_proj": 3,
            },
            alpha_pattern={"k_proj": 16, "^model.layers.1.self_attn.o_proj": 1, "gate": 7},
            init_lora_weights=False,
        ),
        lambda n: "lora_B" in n,
    )

    dora = make(
        "lora-dora",
        base,
        LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"],
            alpha_pattern={"v_proj": 2},
            use_dora=True,
        ),
        lambda n: "lora_B" in n or "magnitude" in n,
    )
    dora.train()  # no dropout configured: train mode only turns off PEFT's eval-time caching
    loss = dora(input_ids=ids).logits.float().pow(2).mean()
    loss.backward()
    for n, p in dora.named_parameters():
        if p.requires_grad:
            key = n.replace(".default", "")
            out[f"lora-dora_grad.{key}"] = p.grad.detach().float().contiguous()
    out["lora-dora_loss"] = loss.detach().reshape(1)

    make(
        "lora-dora-qwen2",
        qwen,
        LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], use_dora=True),
        lambda n: "lora_B" in n or "magnitude" in n,
    )
    make(
        "lora-bias-all-qwen2",
        qwen,
        LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "o_proj"], bias="all"),
        lambda n: "lora_B" in n or n.endswith(".bias"),
    )
    make(
        "lora-bias-dora-qwen2",
        qwen,
        LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "k_proj", "o_proj"], bias="lora_only", use_dora=True),
        lambda n: "lora_B" in n or "magnitude" in n or n.endswith(".bias"),
    )

    save_file(out, os.path.join(OUT, "lora-options-goldens.safetensors"), metadata={
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    })
    os.chmod(os.path.join(OUT, "lora-options-goldens.safetensors"), 0o644)
    for k, v in out.items():
        if k.endswith("_logits") and "qwen2" not in k:
            print(f"{k}: max |Δ| from base {float((v - goldens['base_logits']).abs().max()):.4f}")
        elif k.endswith("_logits"):
            print(f"{k}: max |Δ| from base {float((v - out['base-qwen2_logits']).abs().max()):.4f}")
    for name in ["lora-rank-pattern", "lora-dora", "lora-dora-qwen2", "lora-bias-all-qwen2", "lora-bias-dora-qwen2"]:
        st = load_file(os.path.join(OUT, name, "adapter_model.safetensors"))
        print(name, {k.replace("base_model.model.model.layers.", ""): list(v.shape) for k, v in st.items()})


if __name__ == "__main__":
    main()
