"""The windowed CNN: shapes for any depth/width, named layers, He init, embeddings, ReLU-after-pool equivalence."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

import paraling.models.cnn as cnn
from paraling.config_groups import CNNConfig as ModelConfig
from paraling.errors import ModelError
from paraling.models.cnn import WindowCNN, build_model


@pytest.mark.parametrize(("n_mels", "width", "blocks"), [(40, 11, 3), (60, 18, 5), (40, 5, 4), (20, 1, 2)])
def test_any_depth_and_width(n_mels: int, width: int, blocks: int) -> None:
    cfg = OmegaConf.structured(ModelConfig(n_blocks=blocks))
    m = build_model(cfg, n_mels, width, 7)
    assert m(torch.randn(3, 1, n_mels, width)).shape == (3, 7)
    assert m.layer_names == [f"conv{i}" for i in range(1, blocks + 1)] + ["fc1", "fc2", "out"]
    assert m.features(torch.randn(2, 1, n_mels, width)).shape == (2, 500)


def test_he_init_scale() -> None:
    torch.manual_seed(0)
    m = WindowCNN(40, 11, 7, [32, 64, 128], [3, 2, 2], [0.1, 0.2, 0.3], [500, 500])
    w = m.fc1.weight.detach()
    assert abs(float(w.std()) - (2.0 / w.shape[1]) ** 0.5) < 0.1 * (2.0 / w.shape[1]) ** 0.5
    assert float(m.conv1.bias.abs().sum()) == 0.0


def test_relu_after_pool_matches_relu_before_pool() -> None:
    m = WindowCNN(40, 11, 5, [8, 8], [3, 2], [0.0, 0.0], [16], dropout_fc=0.0).eval()
    x = torch.randn(4, 1, 40, 11)
    h = x
    for name, pool in zip(m.conv_names, m._pools, strict=True):
        conv = getattr(m, name)
        same = torch.nn.functional.conv2d(h, conv.weight, conv.bias, padding="same")
        h = torch.nn.functional.max_pool2d(torch.relu(same), pool)
    ref = m.out(torch.relu(m.fc1(torch.flatten(h, 1))))
    assert torch.allclose(ref, m(x), atol=1e-6)


def test_bad_architecture() -> None:
    with pytest.raises(ModelError, match="one entry per block"):
        WindowCNN(40, 11, 7, [32, 64], [3], [0.1, 0.2], [500])
    with pytest.raises(ModelError, match="at least 2 classes"):
        WindowCNN(40, 11, 1, [32], [3], [0.1], [500])


@pytest.mark.parametrize("native", [True, False])
def test_fc_layers_stay_float32_under_bf16_autocast(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Convolutions follow autocast; the FC layers and the output layer run in float32 (they cost UAR in bf16)."""
    torch.manual_seed(0)
    m = WindowCNN(16, 11, 3, [8, 8], [3, 2], [0.0, 0.0], [12], 0.0)
    m.kernels = "auto" if native else "reference"
    x = torch.randn(5, 1, 16, 11)
    seen: dict[str, torch.dtype] = {}
    for name in ("fc1", "out"):  # (the ops call the convolutions' weights directly: no module hook there)
        getattr(m, name).register_forward_hook(lambda mod, inp, out, name=name: seen.__setitem__(name, out.dtype))
    blocks: list[torch.dtype] = []
    real_block = cnn.conv_block

    def block(*args: object, **kwargs: object) -> tuple[torch.Tensor, bool]:
        out = real_block(*args, **kwargs)
        blocks.append(out[0].dtype)
        return out

    monkeypatch.setattr(cnn, "conv_block", block)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = m(x)
    assert seen == {"fc1": torch.float32, "out": torch.float32}
    assert blocks == [torch.bfloat16, torch.bfloat16]  # both conv blocks computed (and wrote) bfloat16
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, m(x), rtol=0.05, atol=0.05)  # close to the all-fp32 forward
