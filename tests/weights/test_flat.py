"""Flat weight buffers: layout, packing with casts, views, zero-copy pickling, safetensors, staging reuse.

python -m pytest tests/weights/test_flat.py -q
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from zaya_rl.weights.buckets import TensorMeta
from zaya_rl.weights.flat import FlatLayout, HostStager, Staging, pack, views, write_safetensors


def _named():
    g = torch.Generator().manual_seed(0)
    return {"a.bias": torch.randn(3, generator=g).to(torch.bfloat16),  # 6 bytes: would misalign a float32 after it
            "b.weight": torch.randn(4, 5, generator=g), "c.idx": torch.arange(7, dtype=torch.int8),
            "d.weight": torch.randn(2, 2, generator=g)}  # fmt: skip


def _metas(named):
    return [TensorMeta(n, str(t.dtype).removeprefix("torch."), tuple(t.shape)) for n, t in named.items()]


def test_layout_groups_by_element_size_so_every_offset_is_aligned_and_dense():
    layout = FlatLayout.of(_metas(_named()))
    assert [m.name for m in layout.metas] == ["b.weight", "d.weight", "a.bias", "c.idx"]  # 4, 4, 2, 1 bytes
    assert layout.offsets == (0, 80, 96, 102) and layout.nbytes == 109  # no holes (a safetensors data section)
    for m, off in zip(layout.metas, layout.offsets, strict=True):
        assert off % torch.tensor([], dtype=getattr(torch, m.dtype)).element_size() == 0


def test_pack_casts_and_views_read_back_exactly():
    named = _named()
    metas = [TensorMeta(m.name, "float32", m.shape) if m.name == "a.bias" else m for m in _metas(named)]
    layout = FlatLayout.of(metas)
    buf = torch.zeros(layout.nbytes, dtype=torch.uint8)
    pack(named.items(), layout, buf)
    back = dict(views(buf, layout))
    assert back["a.bias"].dtype == torch.float32 and torch.equal(back["a.bias"], named["a.bias"].float())
    for k in ("b.weight", "c.idx", "d.weight"):
        assert torch.equal(back[k], named[k])
    with pytest.raises(ValueError, match="got 3 tensors, the layout has 4"):
        pack(list(named.items())[:3], layout, buf)
    with pytest.raises(KeyError, match="'zz' is not in the update's layout"):
        pack([("zz", torch.ones(1))], layout, buf)


def test_flat_weights_is_a_state_dict_that_pickles_its_buffer_out_of_band():
    named = _named()
    fw = HostStager().stage(named.items())
    assert set(fw) == set(named) and len(fw) == 4 and torch.equal(fw["b.weight"], named["b.weight"])
    buffers = []
    blob = pickle.dumps(fw, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 1 and buffers[0].raw().nbytes == fw.layout.nbytes and len(blob) < 2000  # zero-copy
    back = pickle.loads(blob, buffers=[np.frombuffer(buffers[0].raw(), dtype=np.uint8)])  # read-only, as from Ray
    assert isinstance(back.buffer, np.ndarray)
    assert all(torch.equal(back[k], named[k]) for k in named) and dict(back.items()).keys() == named.keys()


def test_write_safetensors_is_read_by_safetensors(tmp_path):
    named = _named()
    write_safetensors(HostStager().stage(named.items()), tmp_path / "m.safetensors")
    back = load_file(str(tmp_path / "m.safetensors"))
    assert set(back) == set(named) and all(torch.equal(back[k], named[k]) for k in named)


def test_staging_is_reused_across_versions():
    stager, named = HostStager(), _named()
    first = stager.stage(named.items())
    ptr = first.buffer.data_ptr()
    named["b.weight"] += 1
    second = stager.stage(named.items(), _metas(named))  # lazily, with the metas given
    assert second.buffer.data_ptr() == ptr and torch.equal(second["b.weight"], named["b.weight"])
    s = Staging()
    a = s.get(100, pin=False)
    assert s.get(60, pin=False).data_ptr() == a.data_ptr() and s.get(200, pin=False).numel() == 200
