"""The project's byte-level tokenizer, built locally (no hub download) and loadable by transformers and vLLM.

Token ids 0..255 are the raw bytes (id == byte value, so a token dump reads as the text's bytes); the
specials follow. Under the hood it is a HF ``tokenizers`` byte-level BPE with an empty merge list: the
``ByteLevel`` pre-tokenizer maps each byte to its printable stand-in character, the BPE vocabulary maps
that character to the byte's id, and the ``ByteLevel`` decoder maps back. That is the standard GPT-2
machinery, so any consumer of ``tokenizer.json`` (transformers, vLLM, tokenizers) reads it unchanged.

Chat format (Jinja template, saved with the tokenizer)::

    <|bos|><|system|>...<|eos|><|user|>...<|eos|><|assistant|>...<|eos|>

``<|eos|>`` ends every turn, so it is also the stop token of generation; ``add_generation_prompt``
appends ``<|assistant|>``. Decoding a prefix that ends inside a multi-byte UTF-8 character yields
U+FFFD; streaming consumers use ``zaya_rl.models.detokenize.IncrementalDetokenizer``, which holds such
tails back until the character completes.

Run ``python -m pytest tests/models/test_tokenizer.py -q``.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
#: Roles the chat template accepts; each has a marker token ``<|role|>``.
ROLES = ("system", "user", "assistant")
SPECIAL_TOKENS = (PAD, BOS, EOS, *(f"<|{r}|>" for r in ROLES))
NUM_BYTES = 256
#: ids 0..255 are bytes, then the specials in ``SPECIAL_TOKENS`` order: vocab size 262.
VOCAB_SIZE = NUM_BYTES + len(SPECIAL_TOKENS)

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown chat role ' + message['role'] + '; expected system, user or assistant') }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def build_byte_tokenizer() -> PreTrainedTokenizerFast:
    """Build the byte-level chat tokenizer (vocab ``VOCAB_SIZE``; ids 0..255 = bytes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_to_char = bytes_to_unicode()
    vocab = {byte_to_char[b]: b for b in range(NUM_BYTES)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    # use_regex=False: no GPT-2 word splitting, every byte is its own token anyway.
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_max_length=1 << 20,
    )
    if len(tok) != VOCAB_SIZE:
        raise RuntimeError(f"byte tokenizer has {len(tok)} tokens, expected {VOCAB_SIZE}")
    return tok


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: str) -> None:
    """``save_pretrained`` plus a portable ``tokenizer_config.json``.

    transformers 5 records its internal class name ``TokenizersBackend``, which transformers 4.x (still
    paired with some vLLM builds) cannot resolve; ``PreTrainedTokenizerFast`` loads in both. The chat
    template is also written into the config, where 4.x readers look for it.
    """
    import json
    from pathlib import Path

    tokenizer.save_pretrained(out_dir)
    path = Path(out_dir) / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    if tokenizer.chat_template is not None:
        config["chat_template"] = tokenizer.chat_template
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def encode_chat(tokenizer, messages: list[dict[str, str]], *, system_prompt: str | None = None) -> list[int]:
    """Prompt token ids of ``messages`` under the tokenizer's chat template, ready for the assistant turn.

    Renders the template to text and tokenises it without adding special tokens again (the template
    already holds them), which works the same for this project's tokenizer and any HF checkpoint's.
    ``system_prompt`` is prepended as a system message unless ``messages`` already has one.
    """
    if system_prompt and not any(m.get("role") == "system" for m in messages):
        messages = [{"role": "system", "content": system_prompt}, *messages]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
