#!/usr/bin/env python3
"""PEFT IA3 on Phi-3's fused modules, for ia3-fused.test.ts.

The backbone is packages/model/test/goldens/fixtures/phi3 (as in make_peft_arch.py), loaded in
float32 with eager attention. PEFT 0.21 has no IA3 default for phi3, so both lists are given:

  fixtures/arch-phi3-ia3/  IA3 on qkv_proj, o_proj, gate_up_proj (output scales: ia3_l
                           [(Hq + 2·Hkv)·hd, 1], [d, 1], [2·d_ff, 1]) and down_proj
                           (feed-forward: ia3_l [1, d_ff]), vectors 1 + 0.3·N(0, 1)
  fixtures/ia3-phi3-goldens.safetensors
      input_ids         I32 [B, T]  (make_peft_arch.py's)
      phi3_ia3_logits   F32 [B, T, V]  PeftModel forward

Run (never from the tests), in the venv of make_peft_arch.py:
  /tmp/venv-peft/bin/python make_peft_ia3_phi3.py
(made with torch 2.13.0+cpu, transformers 5.18.0, peft 0.21.0)
"""

import copy
import os

import peft
import torch
import transformers
from make_peft_arch import IDS, MODELS, OUT, logits, save
from peft import IA3Config, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM


def main():
    torch.manual_seed(0)
    ids = torch.tensor(IDS, dtype=torch.long)
    base = AutoModelForCausalLM.from_pretrained(
        os.path.join(MODELS, "phi3"), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    cfg = IA3Config(
        target_modules=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
        feedforward_modules=["down_proj"],
        task_type="CAUSAL_LM",
    )
    ia3 = get_peft_model(copy.deepcopy(base), cfg)
    with torch.no_grad():
        for n, p in ia3.named_parameters():
            if "ia3_l" in n:
                p.copy_(1 + 0.3 * torch.randn_like(p))
    ia3.eval()
    save(ia3, "arch-phi3-ia3")
    want = logits(ia3, ids)
    d = float((want - logits(base, ids)).abs().max())
    print(f"phi3 ia3: max |Δ| from base {d:.4f}")
    save_file(
        {"input_ids": ids.to(torch.int32).contiguous(), "phi3_ia3_logits": want},
        os.path.join(OUT, "ia3-phi3-goldens.safetensors"),
        metadata={
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
    )


if __name__ == "__main__":
    main()
