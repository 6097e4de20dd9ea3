"""A tiny random checkpoint of one model family, written by transformers itself (issue #12).

    python make_family.py FAMILY OUTDIR [--seed S]
    python make_family.py all ROOT          # every family, into ROOT/<family> (one process)
    python make_family.py --list

`from_config` + `save_pretrained` in bfloat16, sharded with an index (small max_shard_size), no
download: the layout is exactly what users bring. Dimensions are tiny but keep each family's
ratios (GQA where it has it, hidden a multiple of 64). Run in the client venv.
"""
import argparse
import os
import sys

# Common tiny dimensions; each family overrides what it names differently.
BASE = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512, max_position_embeddings=256)
MOE = dict(num_local_experts=4, num_experts_per_tok=2)

# family -> (model_type, extra config fields). Field names are the config classes' own.
FAMILIES = {
    "llama3": ("llama", dict(rope_parameters={
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 64})),
    "llama_bias": ("llama", dict(attention_bias=True, mlp_bias=True)),
    "llama_tied": ("llama", dict(tie_word_embeddings=True)),
    "mistral": ("mistral", dict(sliding_window=64)),
    "qwen2": ("qwen2", dict(tie_word_embeddings=False)),
    "qwen3": ("qwen3", dict(head_dim=32, tie_word_embeddings=False)),
    "phi3": ("phi3", dict(num_key_value_heads=2, pad_token_id=0)),
    "gemma2": ("gemma2", dict(head_dim=32, query_pre_attn_scalar=32, sliding_window=64)),
    "gemma3_text": ("gemma3_text", dict(head_dim=32, query_pre_attn_scalar=32, sliding_window=64)),
    "mixtral": ("mixtral", dict(**MOE)),
    "qwen2_moe": ("qwen2_moe", dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
                                    shared_expert_intermediate_size=128, decoder_sparse_step=1)),
    "qwen3_moe": ("qwen3_moe", dict(head_dim=32, num_experts=4, num_experts_per_tok=2,
                                    moe_intermediate_size=64, decoder_sparse_step=1)),
    "olmo2": ("olmo2", dict(pad_token_id=0)),
    "granite": ("granite", dict(embedding_multiplier=12.0, residual_multiplier=0.22,
                                attention_multiplier=0.0078125, logits_scaling=8.0)),
    "starcoder2": ("starcoder2", dict(use_bias=True, intermediate_size=512)),
    "gpt_neox": ("gpt_neox", dict(intermediate_size=512, num_key_value_heads=None,
                                  use_parallel_residual=True, bos_token_id=0, eos_token_id=0)),
}


def make_config(family):
    from transformers import AutoConfig
    model_type, extra = FAMILIES[family]
    fields = dict(BASE)
    fields.update(extra)
    fields = {k: v for k, v in fields.items() if v is not None}
    return AutoConfig.for_model(model_type, **fields)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("family", nargs="?", choices=sorted(FAMILIES) + ["all"])
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-shard-size", default="200KB")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args(argv)
    if a.list:
        print(" ".join(FAMILIES))
        return 0
    if not a.family or not a.outdir:
        ap.error("FAMILY and OUTDIR are required")
    if a.family == "all":
        for family in FAMILIES:
            write_family(family, os.path.join(a.outdir, family), a.seed, a.max_shard_size)
    else:
        write_family(a.family, a.outdir, a.seed, a.max_shard_size)
    return 0


def write_family(family, outdir, seed, max_shard_size):
    import torch
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    cfg = make_config(family)
    cfg.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    # Random init is tiny (std 0.02); give norms non-trivial values too so that copying them
    # wrongly would show in the logits.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(outdir, max_shard_size=max_shard_size)


if __name__ == "__main__":
    sys.exit(main())
