"""The attention blocks: SAC's equations, its two compute orders, identity start, shapes."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hoi.config import ConfigError
from hoi.models.attention import (
    ATTENTION_BLOCKS,
    CBAM,
    GlobalContext,
    NoOptions,
    SpatiallyAwareContext,
    SqueezeExcite,
    create_attention,
)
from hoi.models.attention.sac import SACOptions

BLOCK_NAMES = sorted(name for name, cls in ATTENTION_BLOCKS.items() if cls is not None)


def _randomise(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.1)


def test_sac_matches_equations_2_to_5() -> None:
    """Compute Eq. 2-5 literally (with explicit matrices) and compare."""
    torch.manual_seed(1)
    block = SpatiallyAwareContext(64, reduction=32).double()
    _randomise(block)
    x = torch.randn(2, 64, 5, 7, dtype=torch.double)
    k = block.num_contexts
    assert k == 2
    X = x.flatten(2)  # B, C, N
    w_phi = block.phi.weight.view(k, 64)
    w_theta = block.theta.weight.view(k, 64)
    w_rho = block.rho.weight.view(64, 64)
    alpha = torch.softmax(w_phi @ X + block.phi.bias.view(1, k, 1), dim=-1)  # Eq. 2
    mu = alpha @ X.transpose(1, 2)  # Eq. 3, K x C
    beta = w_theta @ X + block.theta.bias.view(1, k, 1)
    y = mu.transpose(1, 2) @ beta  # Eq. 4
    z = X + w_rho @ y + block.rho.bias.view(1, 64, 1)  # Eq. 5
    out = block(x)
    torch.testing.assert_close(out.flatten(2), z, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(block.last_alpha.flatten(2), alpha)
    torch.testing.assert_close(block.last_beta.flatten(2), beta)


@pytest.mark.parametrize("softmax_beta", [False, True])
def test_sac_cheap_and_paper_orders_agree_forward_and_backward(softmax_beta: bool) -> None:
    cheap = SpatiallyAwareContext(128, softmax_beta=softmax_beta, order="cheap")
    _randomise(cheap)
    paper = SpatiallyAwareContext(128, softmax_beta=softmax_beta, order="paper")
    paper.load_state_dict(cheap.state_dict())
    x1 = torch.randn(2, 128, 9, 11, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    out1, out2 = cheap(x1), paper(x2)
    torch.testing.assert_close(out1, out2, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out1)
    out1.backward(grad)
    out2.backward(grad)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-5)
    for (name, p1), (_, p2) in zip(cheap.named_parameters(), paper.named_parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-4, atol=1e-4, msg=name)


def test_softmax_beta_changes_the_output_and_normalises_beta() -> None:
    plain = SpatiallyAwareContext(64, reduction=8)
    _randomise(plain)
    soft = SpatiallyAwareContext(64, reduction=8, softmax_beta=True)
    soft.load_state_dict(plain.state_dict())
    x = torch.randn(1, 64, 6, 6)
    assert not torch.allclose(plain(x), soft(x))
    torch.testing.assert_close(soft.last_beta.sum(dim=1), torch.ones(1, 6, 6))


@pytest.mark.parametrize(
    "channels,reduction,contexts", [(64, 32, 2), (256, 32, 8), (16, 32, 1), (512, 512, 1)]
)
def test_sac_number_of_contexts(channels: int, reduction: int, contexts: int) -> None:
    assert SpatiallyAwareContext(channels, reduction).num_contexts == contexts


class _ShapeRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.numels: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.numels.append((str(func), tuple(t.shape)))
        return out


@pytest.mark.parametrize("order", ["cheap", "paper"])
def test_sac_never_materialises_an_n_by_n_tensor(order: str) -> None:
    block = SpatiallyAwareContext(32, reduction=8, order=order)
    x = torch.randn(1, 32, 32, 32, requires_grad=True)
    n = 32 * 32
    with _ShapeRecorder() as rec:
        block(x).sum().backward()
    largest = max(rec.numels, key=lambda r: torch.Size(r[1]).numel())
    assert torch.Size(largest[1]).numel() <= 32 * n, largest  # C*N, far below N*N
    assert all(shape.count(n) < 2 for _, shape in rec.numels)


@pytest.mark.parametrize("name", ["sac", "gc"])
def test_additive_blocks_start_as_identity(name: str) -> None:
    block = create_attention(name, 64)
    x = torch.randn(2, 64, 7, 7)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("name", BLOCK_NAMES)
def test_blocks_keep_shape_and_are_trainable(name: str) -> None:
    block = create_attention(name, 64)
    x = torch.randn(2, 64, 7, 5)
    out = block(x)
    assert out.shape == x.shape
    out.square().sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


def test_unknown_block_lists_valid_names() -> None:
    valid = "cbam, gc, none, sac, se"
    message = rf"attention.type: unknown value 'sak'; valid names: {valid}$"
    with pytest.raises(ConfigError, match=message):
        create_attention("sak", 64)
    with pytest.raises(ConfigError, match=r"'none' builds no attention block"):
        create_attention("none", 64)


def test_unknown_sac_order_is_refused_by_its_table() -> None:
    message = r"attention.options.order: unknown value 'fast'; valid names: cheap, paper$"
    with pytest.raises(ConfigError, match=message):
        SpatiallyAwareContext(64, order="fast")


@pytest.mark.parametrize(
    "cls,position,reduction,options",
    [
        (SpatiallyAwareContext, "after_conv2", 32, SACOptions),
        (GlobalContext, "after_conv3", 16, NoOptions),
        (SqueezeExcite, "after_conv3", 16, NoOptions),
        (CBAM, "after_conv3", 16, NoOptions),
    ],
)
def test_blocks_carry_their_papers_defaults(cls, position: str, reduction: int, options) -> None:
    assert (cls.default_position, cls.default_reduction) == (position, reduction)
    assert cls.Options is options


def test_sac_options_and_the_written_order() -> None:
    assert SACOptions() == SACOptions(softmax_beta=False, order="cheap")
    cheap = {"softmax_beta": True, "order": "cheap"}
    assert SpatiallyAwareContext.as_written(cheap) == {"softmax_beta": True, "order": "paper"}
    assert SpatiallyAwareContext.as_written({"softmax_beta": False, "order": "paper"}) is None
    assert GlobalContext.as_written({}) is None


@pytest.mark.parametrize("name", BLOCK_NAMES)
def test_wrong_input_shape_names_expected_and_actual(name: str) -> None:
    block = create_attention(name, 64)
    with pytest.raises(ValueError, match=r"built for 64 channels, got an input with 32"):
        block(torch.randn(1, 32, 4, 4))
    with pytest.raises(ValueError, match=r"4-d feature map.*\(64, 4, 4\)"):
        block(torch.randn(64, 4, 4))


def test_gc_block_parameters_match_gcnet() -> None:
    """conv_mask (C+1) + conv(C->C/16) + LayerNorm(C/16) + conv(C/16->C), with biases."""
    c, h = 256, 16
    block = create_attention("gc", c)
    expected = (c + 1) + (c * h + h) + 2 * h + (h * c + c)
    assert sum(p.numel() for p in block.parameters()) == expected


@pytest.mark.parametrize("name", BLOCK_NAMES)
def test_blocks_accept_non_contiguous_inputs(name: str) -> None:
    block = create_attention(name, 16)
    x = torch.randn(1, 16, 12, 12)
    view = x[:, :, 2:9, 3:11]
    torch.testing.assert_close(block(view), block(view.contiguous()))
