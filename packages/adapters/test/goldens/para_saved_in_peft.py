#!/usr/bin/env python3
"""Second half of para_saved_in_peft.mjs (see there): loads para's saved adapters with PEFT and
compares PEFT's logits with para's. Never run by the tests."""

import json
import os
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/para-peft"
ours = json.load(open(os.path.join(OUT, "para_logits.json")))
ids = torch.tensor(ours["ids"])
worst = 0.0
for name, base in ours["base"].items():
    m = AutoModelForCausalLM.from_pretrained(os.path.join(HERE, "fixtures", base), attn_implementation="eager").float().eval()
    p = PeftModel.from_pretrained(m, os.path.join(OUT, name)).eval()
    with torch.no_grad():
        got = p(input_ids=ids).logits.float().reshape(-1)
    d = float((got - torch.tensor(ours["logits"][name])).abs().max())
    worst = max(worst, d)
    print(f"{name}: max |PEFT - para| {d:.3g}")
sys.exit(0 if worst < 1e-4 else 1)
