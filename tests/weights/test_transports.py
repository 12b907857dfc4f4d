"""Weight transports on CPU: safetensors bucket folders, push reports, senders without Ray, and applying
updates to a ``TorchEngine``.

python -m pytest tests/weights/test_transports.py -q
"""

from __future__ import annotations

import asyncio

import pytest
import torch

from zaya_rl.weights.base import PushReport, WeightUpdate
from zaya_rl.weights.files import read_folder, tensor_meta, write_folder
from zaya_rl.weights.receive import apply_to_engine
from zaya_rl.weights.senders import FileSender, StateDictSender, make_sender


def _named():
    g = torch.Generator().manual_seed(0)
    return {"w1": torch.randn(8, 4, generator=g), "b1": torch.randn(8, generator=g),
            "experts": torch.randn(2, 6, 4, generator=g).to(torch.bfloat16)}


def test_folder_roundtrip_is_exact_and_bucketed(tmp_path):
    named = _named()
    metas = write_folder(named.items(), tmp_path / "v0", bucket_bytes=128)  # 128 + 32 + 96 bytes
    files = sorted(p.name for p in (tmp_path / "v0").iterdir())
    assert files == ["model-00000.safetensors", "model-00001.safetensors"]  # [w1], [b1, experts]
    back = read_folder(tmp_path / "v0")
    assert set(back) == set(named) and all(torch.equal(back[k], named[k]) for k in named)
    assert [m.dtype for m in metas] == ["float32", "float32", "bfloat16"]
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors"):
        read_folder(tmp_path)


def test_push_report_metrics():
    rep = PushReport("file", num_bytes=2_000_000_000, num_buckets=8, seconds=0.5,
                     worker=[{"pause_s": 0.1, "load_s": 0.3}, {"pause_s": 0.2, "load_s": 0.25}])
    m = rep.metrics()
    assert m["weights/gbps"] == pytest.approx(4.0) and m["weights/buckets"] == 8.0
    assert m["weights/worker_pause_s"] == 0.2 and m["weights/worker_load_s"] == 0.3  # slowest worker


class _Recorder:
    """Stands in for the Ray call: records what each worker would receive."""

    def __init__(self):
        self.updates: list[tuple[int, WeightUpdate]] = []

    def __call__(self, sender):
        def apply(update, targets):
            if update.transport == "file":  # the folder must exist while the workers load it
                update = WeightUpdate(update.version, update.transport, update.tensors, read_folder(update.payload))
            self.updates += [(i, update) for i in targets]
            return [{"load_s": 0.0} for _ in targets]

        sender._apply = apply
        sender.workers = ["w0", "w1"]
        return sender


def test_file_sender_writes_loads_and_cleans_up(tmp_path):
    rec = _Recorder()
    sender = rec(FileSender(bucket_bytes=64, dtype="float32", shm_dir=str(tmp_path)))
    report = sender.push(lambda: iter(_named().items()), version=4)
    assert [i for i, _ in rec.updates] == [0, 1] and all(u.version == 4 for _, u in rec.updates)
    loaded = rec.updates[0][1].payload
    assert loaded["experts"].dtype == torch.float32  # cast to the transfer dtype
    assert report.num_buckets == 3 and report.num_bytes == (32 + 8 + 48) * 4
    assert not any(sender.root.glob("v*"))  # the version folder is deleted after the push
    sender.close()


def test_state_dict_sender_subset_and_make_sender(monkeypatch, tmp_path):
    import ray

    monkeypatch.setattr(ray, "put", lambda x: x)
    rec = _Recorder()
    sender = rec(StateDictSender(bucket_bytes=1, dtype="bfloat16"))
    sender.push(lambda: iter(_named().items()), version=2, workers=[1])
    (i, update), = rec.updates
    assert i == 1 and update.payload["w1"].dtype == torch.bfloat16 and update.transport == "state_dict"
    from zaya_rl.config import config_from_dict

    ws = config_from_dict({"weight_sync": {"transport": "file", "shm_dir": str(tmp_path)}}).weight_sync
    assert isinstance(make_sender(ws, "float32"), FileSender)
    with pytest.raises(RuntimeError, match="before connect"):
        StateDictSender(bucket_bytes=1, dtype="float32").push(lambda: iter(()), 0)


def test_apply_to_torch_engine_state_dict_and_file(tmp_path):
    from zaya_rl.models.policy import build_preset
    from zaya_rl.rollout.torch_engine import TorchEngine

    model, tok = build_preset("tiny-qwen3moe")
    engine = TorchEngine(model, tok, record_routing=False)
    target = {k: torch.full_like(v, 0.5) for k, v in model.state_dict().items()}
    metas = write_folder(target.items(), tmp_path / "v7", bucket_bytes=4096)
    asyncio.run(apply_to_engine(engine, WeightUpdate(7, "file", tuple(metas), str(tmp_path / "v7"))))
    assert engine.version == 7 and all(torch.equal(v, target[k]) for k, v in model.state_dict().items())
    upd = WeightUpdate(8, "state_dict", tuple(tensor_meta(k, v) for k, v in target.items()), target)
    asyncio.run(apply_to_engine(engine, upd))
    assert engine.version == 8
    with pytest.raises(ValueError, match="needs the vLLM engine"):
        asyncio.run(apply_to_engine(engine, WeightUpdate(9, "nccl", ())))
