"""Transfer learning: layer selection, shape errors, copying from a tracked run, freezing, pre-training reuse."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from safetensors.torch import load_file

import paraling.pipeline.pretrain as pretrain
from paraling.errors import TransferError
from paraling.models.cnn import WindowCNN, build_model
from paraling.models.transfer import copy_layers, select_layers
from paraling.pipeline.experiment import run_experiment
from paraling.pipeline.pretrain import apply_transfer, load_source, load_transfer_source

LAYERS = ["conv1", "conv2", "conv3", "fc1", "out"]


def _weights(run_id: str, fold: int) -> dict[str, torch.Tensor]:
    with tempfile.TemporaryDirectory() as tmp:
        return load_file(MlflowClient().download_artifacts(run_id, f"model/fold{fold}.safetensors", tmp))


def test_select_layers() -> None:
    assert select_layers("all", LAYERS, LAYERS) == ["conv1", "conv2", "conv3", "fc1"]
    assert select_layers(["all"], LAYERS, LAYERS[:2]) == ["conv1", "conv2"]
    assert select_layers("conv", LAYERS, LAYERS) == ["conv1", "conv2", "conv3"]
    assert select_layers(["conv1", "out"], LAYERS, LAYERS) == ["conv1", "out"]
    with pytest.raises(TransferError, match="'conv4' does not exist in the target"):
        select_layers(["conv4"], LAYERS, LAYERS)
    with pytest.raises(TransferError, match="'conv3' does not exist in the source"):
        select_layers("conv", LAYERS, ["conv1", "conv2", "fc1", "out"])
    with pytest.raises(TransferError, match="empty"):
        select_layers([], LAYERS, LAYERS)


def test_shape_mismatch_names_the_layer_and_both_shapes() -> None:
    src = WindowCNN(40, 11, 7, [16, 8, 8], [3, 2, 2], [0, 0, 0], [32])
    dst = WindowCNN(40, 11, 3, [8, 8, 8], [3, 2, 2], [0, 0, 0], [32])
    with pytest.raises(
        TransferError,
        match=r"'conv1' \(weight\).*source shape \(16, 1, 3, 3\) vs target shape "
        r"\(8, 1, 3, 3\)",
    ):
        copy_layers(dst, src.state_dict(), ["conv1"])
    with pytest.raises(TransferError, match=r"'out'.*\(7, 32\).*\(3, 32\)"):
        copy_layers(dst, src.state_dict(), ["out"])
    before = dst.conv1.weight.detach().clone()
    assert copy_layers(dst, src.state_dict(), ["conv1", "conv3"], strict=False) == ["conv3"]
    assert torch.equal(dst.conv1.weight, before)
    assert torch.equal(dst.conv3.weight, src.conv3.weight)


def test_unknown_source_run_is_a_transfer_error(mlflow_uri: str, tiny_cfg: Callable[..., DictConfig]) -> None:
    cfg = tiny_cfg("transfer.source=0123456789abcdef0123456789abcdef", "transfer.layers=conv")
    with pytest.raises(TransferError, match="no MLflow run with that id"):
        run_experiment(cfg)
    cfg = tiny_cfg("transfer.source=models:/nope@champion", "transfer.layers=conv")
    with pytest.raises(TransferError, match="registered model not found"):
        run_experiment(cfg)


def test_transfer_copies_conv_layers_from_a_tracked_run(mlflow_uri: str, tiny_cfg: Callable[..., DictConfig]) -> None:
    source = run_experiment(tiny_cfg("name=source"))
    src = _weights(source.run_id, 0)

    # a registered model version (by alias or by number) resolves to its run
    client = MlflowClient()
    client.create_registered_model("langid-cnn")
    mv = client.create_model_version("langid-cnn", f"runs:/{source.run_id}/model", run_id=source.run_id)
    client.set_registered_model_alias("langid-cnn", "champion", mv.version)
    for ref in ("models:/langid-cnn@champion", f"models:/langid-cnn/{mv.version}", f"runs:/{source.run_id}"):
        assert pretrain.resolve_source(tiny_cfg(f"transfer.source={ref}")) == source.run_id

    # epoch 0: right after the transfer, the conv weights equal the source's and the FC weights do not
    cfg = tiny_cfg(f"transfer.source={source.run_id}", "transfer.layers=[conv1,conv2,conv3]")
    spec, _ = load_source(source.run_id)
    model = build_model(cfg.model, spec["n_mels"], int(cfg.windows.width), 3)
    assert apply_transfer(model, cfg, load_transfer_source(cfg)) == ["conv1", "conv2", "conv3"]
    for name in ("conv1", "conv2", "conv3"):
        assert torch.equal(getattr(model, name).weight.detach(), src[f"{name}.weight"])
        assert torch.equal(getattr(model, name).bias.detach(), src[f"{name}.bias"])
    for name in ("fc1", "out"):
        assert not torch.equal(getattr(model, name).weight.detach(), src[f"{name}.weight"])

    # a whole run: conv layers frozen for its only epoch stay equal to the source; FC layers were re-initialised
    cfg = tiny_cfg(
        f"transfer.source={source.run_id}",
        "transfer.layers=conv",
        "transfer.freeze_epochs=1",
        "transfer.lr_start=0.01",
        "name=target",
    )
    target = run_experiment(cfg)
    run = MlflowClient().get_run(target.run_id)
    assert run.data.tags["paraling.transfer.source_run_id"] == source.run_id
    assert target.histories[0][0]["lr"] == pytest.approx(0.01)
    for fold in (0, 1):
        dst = _weights(target.run_id, fold)
        for name in ("conv1", "conv2", "conv3"):
            assert torch.equal(dst[f"{name}.weight"], src[f"{name}.weight"])
        assert not torch.equal(dst["fc1.weight"], src["fc1.weight"])

    # naive transfer copies the FC layers too, but never the output layer
    cfg = tiny_cfg(f"transfer.source={source.run_id}", "transfer.layers=all", "transfer.source_fold=1")
    model = build_model(cfg.model, spec["n_mels"], int(cfg.windows.width), 3)
    assert apply_transfer(model, cfg, load_transfer_source(cfg)) == ["conv1", "conv2", "conv3", "fc1"]
    src1 = _weights(source.run_id, 1)
    assert torch.equal(model.fc1.weight.detach(), src1["fc1.weight"])
    assert not torch.equal(model.out.weight.detach(), src1["out.weight"])

    # a target whose conv1 has another shape fails naming the layer and both shapes
    cfg = tiny_cfg(f"transfer.source={source.run_id}", "transfer.layers=conv", "model.channels=[16,8,8]")
    with pytest.raises(TransferError, match=r"'conv1'.*\(8, 1, 3, 3\).*\(16, 1, 3, 3\)"):
        run_experiment(cfg)


def test_pretrain_source_is_trained_once_then_reused(
    tone_corpus: Path, mlflow_uri: str, tiny_cfg: Callable[..., DictConfig]
) -> None:
    pre = f'transfer.pretrain_overrides=["experiment=pretrain_langid","corpus=csv","corpus.path={tone_corpus}"]'
    first = run_experiment(tiny_cfg("transfer=conv", pre, "name=net5"))
    second = run_experiment(tiny_cfg("transfer=naive", pre, "name=net4"))
    client = MlflowClient()
    experiment = client.get_experiment_by_name("pretrain")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["paraling.role"] == "pretrain"
    assert runs[0].info.status == "FINISHED"
    for r in (first, second):
        assert client.get_run(r.run_id).data.tags["paraling.transfer.source_run_id"] == runs[0].info.run_id
    # the pre-training run inherited the target's model, features and trainer
    params = runs[0].data.params
    assert params["model.channels"] == "[8, 8, 8]" and params["trainer.epochs"] == "1"
    assert params["corpus.path"] == str(tone_corpus)
    # a different source config (dotted override) means a different pre-training run
    pre2 = pre[:-1] + ',"trainer.epochs=2"]'
    run_experiment(tiny_cfg("transfer=conv", pre2, "name=net5b"))
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert len(runs) == 2 and runs[1].data.params["trainer.epochs"] == "2"


def test_pretrain_without_overrides_is_explained(mlflow_uri: str, tiny_cfg: Callable[..., DictConfig]) -> None:
    cfg = tiny_cfg("transfer=conv", "transfer.pretrain_overrides=[]")
    with pytest.raises(TransferError, match="pretrain_overrides"):
        run_experiment(cfg)


def test_pretrain_hash_ignores_how_but_not_what_is_trained(tiny_cfg: Callable[..., DictConfig]) -> None:
    pre = 'transfer.pretrain_overrides=["experiment=pretrain_langid"]'
    base = pretrain.pretrain_config(tiny_cfg("transfer=conv", pre))
    same = pretrain.pretrain_config(
        tiny_cfg("transfer=naive", pre, "trainer.threads=1", "device=cuda", "tracking.experiment=other", "name=net4")
    )
    other = pretrain.pretrain_config(tiny_cfg("transfer=conv", pre, "trainer.epochs=3"))
    assert pretrain.pretrain_hash(base) == pretrain.pretrain_hash(same) != pretrain.pretrain_hash(other)
    assert base.name == "pretrain_langid" and base.corpus.name == "langid" and base.transfer.source is None
