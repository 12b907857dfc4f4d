"""python -m pytest tests/models/test_tokenizer.py -q"""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from zaya_rl.models.detokenize import CanaryFeed, IncrementalDetokenizer
from zaya_rl.models.tokenizer import VOCAB_SIZE, build_byte_tokenizer, save_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_byte_tokenizer()


def test_ids_are_bytes_and_specials_follow(tok):
    text = "2+3=5, héllo ✓"
    assert tok(text, add_special_tokens=False)["input_ids"] == list(text.encode("utf-8"))
    assert len(tok) == VOCAB_SIZE == 262
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (256, 257, 258)
    assert tok.convert_tokens_to_ids(["<|system|>", "<|user|>", "<|assistant|>"]) == [259, 260, 261]
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_chat_template(tok):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"}]
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text == "<|bos|><|system|>Be brief.<|eos|><|user|>1+1?<|eos|><|assistant|>"
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True)["input_ids"]
    assert ids == [257, 259, *b"Be brief.", 258, 260, *b"1+1?", 258, 261]
    with pytest.raises(Exception, match="unknown chat role tool"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_save_and_reload_with_auto_tokenizer(tok, tmp_path):
    save_tokenizer(tok, str(tmp_path))
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    again = AutoTokenizer.from_pretrained(tmp_path)
    msgs = [{"role": "user", "content": "ok"}]
    assert len(again) == len(tok)
    assert again.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) == (
        tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    )
    assert (again.pad_token_id, again.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)


def test_incremental_decoding_never_splits_a_character(tok):
    text = "aé✓😀b"  # 1-, 2-, 3- and 4-byte characters
    detok = IncrementalDetokenizer(tok)
    deltas = [detok.push(b) for b in text.encode("utf-8")]
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)
    # The 4-byte emoji is held back for 3 tokens, then released whole.
    emoji_start = len("aé✓".encode())
    assert deltas[emoji_start : emoji_start + 4] == ["", "", "", "😀"]


def test_invalid_bytes_are_released_after_four_tokens(tok):
    detok = IncrementalDetokenizer(tok)
    out = "".join(detok.push(0xFF) for _ in range(8))
    assert out and set(out) == {"\ufffd"}


def test_canary_feed_flags_a_loop(tok):
    # zlib's sync flush costs ~8 bytes per chunk, so a 64-byte chunk of "abab..." measures 0.125-0.17.
    feed = CanaryFeed(tok, threshold=0.3, patience=2, chunk_bytes=64)
    flagged = [feed.push(b) for b in b"ab" * 80]
    assert flagged.index(True) == 2 * 64 - 1  # flagged by the byte that completes the second chunk
    assert all(flagged[127:]) and len(feed.ratios) == 2 and all(r < 0.3 for r in feed.ratios)


def test_fast_decoder_decodes_exactly_like_the_tokenizer():
    import random
    from types import SimpleNamespace

    from zaya_rl.models.detokenize import CanaryFeed, fast_decoder
    from zaya_rl.models.tokenizer import build_byte_tokenizer

    tok = build_byte_tokenizer()
    fast = fast_decoder(tok)
    assert fast is tok.backend_tokenizer
    rng = random.Random(0)
    for _ in range(200):  # random byte tokens, specials included: split UTF-8 sequences, skipped specials
        ids = [rng.randrange(len(tok)) for _ in range(rng.randrange(1, 12))]
        assert fast.decode(ids, skip_special_tokens=True) == tok.decode(ids, skip_special_tokens=True)
    ids = list("héllo wörld ✓ ".encode()) * 40
    a, b = CanaryFeed(tok, 0.5, 2, 32), CanaryFeed(fast, 0.5, 2, 32)
    assert [a.push(t) for t in ids] == [b.push(t) for t in ids]  # token id == byte value
    cleaning = SimpleNamespace(backend_tokenizer=object(), clean_up_tokenization_spaces=True, decode=None)
    assert fast_decoder(cleaning) is cleaning  # the wrapper post-processes: keep it
