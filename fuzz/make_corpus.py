#!/usr/bin/python3
"""Writes the seed corpus of fuzz/ (fuzz/corpus/<harness>/) from real files.

  /usr/bin/python3 fuzz/make_corpus.py BUILD/loftq

safetensors: stories260K's norm tensors as stored (its real header entries and bytes), its whole
  header over a truncated data buffer, and the tiny model below (bf16 and f32).
model_config: stories260K's config.json, `loftq synth`'s tiny preset, the tiny model's, a Mistral one.
adapter: the adapter of `loftq export` of the tiny model (4-byte length, adapter_config.json,
  adapter_model.safetensors; see fuzz_adapter.cpp), with and without rank/alpha patterns.
runfile: edit programs (see fuzz_runfile.cpp) over fuzz/data/run_tiny.h5, the tiny model's run
  file (nf4 with double quant).
The tiny model: one layer of a 32-wide Llama (config below) with seeded random weights, so that
every seed stays a few kilobytes (libFuzzer mutates whole inputs; small ones run fast).
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORIES = os.path.join(ROOT, "tests", "data", "stories260K")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")

TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
    "intermediate_size": 48, "num_hidden_layers": 1, "num_attention_heads": 2,
    "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 16, "max_position_embeddings": 64,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": True,
    "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2,
}


def safetensors_bytes(tensors, metadata=None):
    """tensors: list of (name, dtype name, shape, raw bytes)."""
    header, offset, data = {}, 0, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def tiny_tensors(dtype):
    c, rng = TINY_CONFIG, np.random.default_rng(0)
    h, i, hd = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    shapes = [("model.embed_tokens.weight", (c["vocab_size"], h)),
              ("model.layers.0.input_layernorm.weight", (h,)),
              ("model.layers.0.self_attn.q_proj.weight", (q, h)),
              ("model.layers.0.self_attn.k_proj.weight", (kv, h)),
              ("model.layers.0.self_attn.v_proj.weight", (kv, h)),
              ("model.layers.0.self_attn.o_proj.weight", (h, q)),
              ("model.layers.0.post_attention_layernorm.weight", (h,)),
              ("model.layers.0.mlp.gate_proj.weight", (i, h)),
              ("model.layers.0.mlp.up_proj.weight", (i, h)),
              ("model.layers.0.mlp.down_proj.weight", (h, i)),
              ("model.norm.weight", (h,))]
    out = []
    for name, shape in shapes:
        v = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        if dtype == "BF16":
            raw = (v.view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            raw = v.astype("<f4").tobytes()
        out.append((name, dtype, shape, raw))
    return out


def write(harness, name, data):
    folder = os.path.join(CORPUS, harness)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def main():
    loftq = sys.argv[1]
    shutil.rmtree(CORPUS, ignore_errors=True)
    stories = open(os.path.join(STORIES, "model.safetensors"), "rb").read()
    n = struct.unpack("<Q", stories[:8])[0]
    header = json.loads(stories[8:8 + n])
    norms = [(k, v["dtype"], v["shape"], stories[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
             for k, v in header.items() if k.endswith("norm.weight")]
    write("safetensors", "stories260K_norms", safetensors_bytes(norms, {"format": "pt"}))
    write("safetensors", "stories260K_header_truncated", stories[:8 + n + 64])
    write("safetensors", "tiny_f32", safetensors_bytes(tiny_tensors("F32")[:4]))
    write("safetensors", "tiny_bf16", safetensors_bytes(tiny_tensors("BF16")[:4]))
    write("safetensors", "empty", safetensors_bytes([]))

    write("model_config", "stories260K", open(os.path.join(STORIES, "config.json"), "rb").read())
    write("model_config", "tiny", json.dumps(TINY_CONFIG, indent=2).encode())
    with tempfile.TemporaryDirectory() as tmp:
        run(loftq, "synth", "--output", f"{tmp}/synth", "--preset", "tiny", "--layers", "1")
        write("model_config", "synth_tiny", open(f"{tmp}/synth/config.json", "rb").read())
        mistral = dict(TINY_CONFIG, model_type="mistral", architectures=["MistralForCausalLM"],
                       sliding_window=4096, attention_bias=True, torch_dtype="bfloat16")
        write("model_config", "mistral_bias", json.dumps(mistral).encode())

        model = f"{tmp}/model"
        os.makedirs(model)
        with open(f"{model}/config.json", "w") as f:
            json.dump(TINY_CONFIG, f)
        with open(f"{model}/model.safetensors", "wb") as f:
            f.write(safetensors_bytes(tiny_tensors("F32")))
        common = ["--model", model, "--targets", "q_proj,down_proj", "--rank", "2", "--iters", "1"]
        run(loftq, "quantize", *common, "--work", f"{tmp}/dq.h5", "--double-quant")
        os.makedirs(os.path.join(ROOT, "fuzz", "data"), exist_ok=True)
        shutil.copy(f"{tmp}/dq.h5", os.path.join(ROOT, "fuzz", "data", "run_tiny.h5"))
        run(loftq, "quantize", *common, "--work", f"{tmp}/run.h5")
        # Edit programs (fuzz_runfile.cpp): op, object (0xFF root, else matrix k), dataset, attribute, args.
        u64 = lambda v: struct.pack("<Q", v & (2**64 - 1))
        s8 = lambda b: bytes([len(b)]) + b
        write("runfile", "as_written", b"")
        write("runfile", "flip_code", bytes([3, 0, 0, 0]) + u64(5) + s8(b"\x5a"))
        write("runfile", "unflag", bytes([3, 0xFF, 0, 0]) + u64(1) + s8(b"\x00"))
        write("runfile", "rows_string", bytes([1, 1, 0, 3]) + s8(b"64"))
        write("runfile", "rank_huge", bytes([0, 0, 0, 11]) + u64(2**62))
        write("runfile", "options_not_json", bytes([1, 0xFF, 0, 1]) + s8(b"{\"rank\":"))
        write("runfile", "no_checksum", bytes([4, 1, 13, 0]))
        write("runfile", "reshaped_B", bytes([6, 0, 5, 0, 2, 3, 2, 1]) + u64(0) + s8(b"\xff\xff\xc0\x7f"))
        write("runfile", "renamed", bytes([7, 1, 0, 0]) + s8(b"model.layers.0.self_attn.q_proj.weight"))
        out = f"{tmp}/out"
        run(loftq, "export", "--work", f"{tmp}/run.h5", "--model", model, "--output", out)
        cfg = open(f"{out}/loftq_init/adapter_config.json", "rb").read()
        tensors = open(f"{out}/loftq_init/adapter_model.safetensors", "rb").read()
        write("adapter", "export", struct.pack("<I", len(cfg)) + cfg + tensors)
        doc = json.loads(cfg)
        doc["rank_pattern"] = {"q_proj": 2, "model.layers.0.mlp.down_proj": 2}
        doc["alpha_pattern"] = {"down_proj": 8.0}
        doc["use_rslora"] = True
        cfg = json.dumps(doc).encode()
        write("adapter", "patterns_rslora", struct.pack("<I", len(cfg)) + cfg + tensors)


if __name__ == "__main__":
    main()
