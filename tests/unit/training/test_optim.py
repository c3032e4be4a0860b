"""ScheduledSGD: torch.optim.SGD's update with learning rate and momentum in device tensors (one CUDA graph per fit)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from paraling.training.optim import ScheduledSGD


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_matches_torch_sgd_under_changing_schedules(nesterov: bool, weight_decay: float) -> None:
    a, b = _model(), _model()
    ref = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay)
    ours = ScheduledSGD(b.parameters(), lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(1)
    for epoch, (lr, mom) in enumerate([(0.1, 0.9), (0.05, 0.95), (0.01, 0.99)]):
        for g in ref.param_groups:
            g["lr"], g["momentum"] = lr, mom
        ours.set_schedule(lr, mom)
        for _ in range(4):
            x, y = torch.randn(8, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)
            _step(a, ref, x, y)
            _step(b, ours, x, y)
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(pb, pa, rtol=1e-5, atol=1e-6, msg=f"epoch {epoch}")


def test_schedule_lives_in_tensors_updated_in_place() -> None:
    """A recorded step reads the tensors' storage: set_schedule must write into them, not replace them."""
    opt = ScheduledSGD(_model().parameters(), lr=0.1, momentum=0.9, nesterov=True)
    lr_t, mom_t = opt.lr_t, opt.momentum_t
    opt.set_schedule(0.02, 0.95)
    assert opt.lr_t is lr_t and opt.momentum_t is mom_t
    assert float(lr_t) == pytest.approx(0.02) and float(mom_t) == pytest.approx(0.95)
    assert opt.param_groups[0]["lr"] == 0.02 and opt.param_groups[0]["momentum"] == 0.95


def test_momentum_buffers_exist_before_the_first_step() -> None:
    """A buffer created inside a captured step would be re-created at every replay: they exist from the start."""
    model = _model()
    opt = ScheduledSGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        assert torch.equal(opt.state[p]["momentum_buffer"], torch.zeros_like(p))


def test_frozen_parameters_do_not_move() -> None:
    model = _model()
    model[0].weight.requires_grad_(False)
    before = model[0].weight.detach().clone()
    opt = ScheduledSGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    _step(model, opt, torch.randn(4, 6), torch.tensor([0, 1, 2, 0]))
    assert torch.equal(model[0].weight, before) and model[0].bias.grad is not None


def test_resumes_from_a_torch_sgd_checkpoint() -> None:
    """Checkpoints written by earlier releases hold torch.optim.SGD's state: they resume into the same trajectory."""
    a = _model()
    ref = torch.optim.SGD(a.parameters(), lr=0.05, momentum=0.95, nesterov=True)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    _step(a, ref, x, y)
    b = copy.deepcopy(a)
    ours = ScheduledSGD(b.parameters(), lr=0.5, momentum=0.1, nesterov=True)
    ours.load_state_dict(copy.deepcopy(ref.state_dict()))
    assert float(ours.lr_t) == pytest.approx(0.05) and float(ours.momentum_t) == pytest.approx(0.95)
    _step(a, ref, x, y)
    _step(b, ours, x, y)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pb, pa, rtol=1e-5, atol=1e-6)


def test_bad_hyper_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        ScheduledSGD(_model().parameters(), lr=-0.1)


def test_lr_scale_groups_step_at_their_fraction_of_the_rate() -> None:
    from paraling.training.optim import ScheduledAdamW, param_groups

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    groups = param_groups(model, {"0": 0.5})
    assert [g["lr_scale"] for g in groups] == [1.0, 0.5] and sum(len(g["params"]) for g in groups) == 4
    before = [p.detach().clone() for p in model.parameters()]
    opt = ScheduledSGD(groups, lr=0.1, momentum=0.0)
    model(torch.randn(4, 3)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step()
    for (name, p), b, g in zip(model.named_parameters(), before, grads, strict=True):
        scale = 0.5 if name.startswith("0.") else 1.0
        torch.testing.assert_close(p.detach(), b - 0.1 * scale * g)
    adam = ScheduledAdamW(param_groups(model, {"1": 0.0}), lr=0.01)
    adam.set_schedule(0.02, 0.9)
    assert sorted(g["lr"] for g in adam.param_groups) == [0.0, 0.02]
    frozen = [p.detach().clone() for p in model[1].parameters()]
    model(torch.randn(4, 3)).sum().backward()
    adam.step()
    for p, b in zip(model[1].parameters(), frozen, strict=True):
        torch.testing.assert_close(p.detach(), b)  # lr_scale 0: the layer does not move
