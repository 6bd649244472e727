"""Adam's norm and momentum agreement on large tensors from one page in eight (docs/adr/0012):
the fused kernel and the torch versions read the same pages, every page once in eight steps,
small tensors exactly, and the estimates stay close to the exact sums."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import lively
from torch import nn

from hf_l3rs import L3RS, L3RSConfig
from hf_l3rs.optim.fused import load_fused
from hf_l3rs.optim.reference import ReferenceL3RS
from hf_l3rs.optim.sampling import PAGE, SAMPLE_EVERY, SAMPLE_MIN_PAGES, adam_sums, estimates, is_sampled

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
needs_fused = pytest.mark.skipif(load_fused() is None, reason="no C++ compiler for the fused kernels")


def _adam_state(shape: tuple[int, ...], seed: int = 0, memory_format=torch.contiguous_format):
    g = torch.Generator().manual_seed(seed)
    # rows of very different scale, as real weight gradients have
    scale = torch.logspace(-3, 0, shape[0])[(...,) + (None,) * (len(shape) - 1)]
    grad = (torch.randn(shape, generator=g) * scale).contiguous(memory_format=memory_format)
    m = (0.5 * grad + 0.01 * torch.randn(shape, generator=g) * scale).contiguous(memory_format=memory_format)
    v = (grad.square() + 1e-4 * scale.square()).contiguous(memory_format=memory_format)
    return grad, m, v


def _prospective_adam(g, m, v, step=5):
    m1, v1 = BETA1 * m + (1 - BETA1) * g, BETA2 * v + (1 - BETA2) * g * g
    return (m1 / (1 - BETA1**step)) / (torch.sqrt(v1) / math.sqrt(1 - BETA2**step) + EPS)


def _kernel_sums(g, m, v, offset, step=5):
    out = load_fused().probe([g], [m], [v], offset, True, BETA1, BETA2, EPS, 1 - BETA1**step, 1 - BETA2**step)
    return out[0]


def test_the_threshold_is_whole_pages() -> None:
    assert not is_sampled(SAMPLE_MIN_PAGES * PAGE - 1)
    assert is_sampled(SAMPLE_MIN_PAGES * PAGE)


@needs_fused
@pytest.mark.parametrize("shape", [(384, 1536), (300, 301), (128, 64, 3, 3)])
@pytest.mark.parametrize("offset", [0, 3, 7])
def test_kernel_and_torch_read_the_same_pages(shape, offset) -> None:
    layout = torch.channels_last if len(shape) == 4 else torch.contiguous_format
    g, m, v = _adam_state(shape, memory_format=layout)
    k = _kernel_sums(g, m, v, offset)
    t = adam_sums(g, _prospective_adam(g, m, v), g, m, offset)
    assert k[0] == pytest.approx(float((g.double() ** 2).sum()), rel=1e-5)  # ‖g‖² over every element
    assert float(k[5]) == float(t[4])  # the same count of elements
    torch.testing.assert_close(k[1:5], t[:4], rtol=1e-5, atol=0.0)


@needs_fused
def test_a_small_tensor_is_summed_exactly() -> None:
    g, m, v = _adam_state((100, 200))  # 20,000 elements, under 64 pages
    k = _kernel_sums(g, m, v, offset=5)
    d = _prospective_adam(g, m, v)
    assert float(k[5]) == g.numel()
    assert float(k[1]) == pytest.approx(float((d.double() ** 2).sum()), rel=1e-5)
    assert float(k[2]) == pytest.approx(float((g.double() * m.double()).sum()), rel=1e-5)


def test_every_page_is_read_once_in_eight_steps() -> None:
    x = torch.rand(70 * PAGE + 123, dtype=torch.float64)  # a partial last page
    totals = [adam_sums(x, None, x, torch.ones_like(x), off) for off in range(SAMPLE_EVERY)]
    assert sum(float(t[4]) for t in totals) == x.numel()
    assert sum(float(t[3]) for t in totals) == pytest.approx(float((x * x).sum()), rel=1e-12)
    counts = {float(t[4]) for t in totals}
    assert max(counts) - min(counts) <= PAGE  # balanced: 8 or 9 pages each


def test_the_estimates_are_close_to_the_exact_norm_and_cosine() -> None:
    g, m, v = _adam_state((384, 1536), seed=1)
    d = _prospective_adam(g, m, v)
    exact_norm = float(d.double().norm())
    exact_cos = float((g.double() * m.double()).sum() / (g.double().norm() * m.double().norm()))
    numel, gg = torch.tensor([float(g.numel())]), g.double().square().sum().reshape(1)
    for off in range(SAMPLE_EVERY):
        dnorm, agreement = estimates(numel, gg, adam_sums(g, d, g, m, off)[None])
        assert float(dnorm[0]) == pytest.approx(exact_norm, rel=0.02)
        cos = float(agreement[0, 0] / torch.sqrt(gg[0] * agreement[0, 1]))
        assert cos == pytest.approx(exact_cos, abs=0.02)


def test_a_sample_without_gradient_gives_no_agreement() -> None:
    """An embedding whose sampled pages saw no token: its cosine is unknown (NaN), not 0."""
    g = torch.zeros(SAMPLE_MIN_PAGES * PAGE)
    g[PAGE : 2 * PAGE] = 1.0  # only page 1 has a gradient
    m = torch.ones_like(g)
    numel, gg = torch.tensor([float(g.numel())]), g.double().square().sum().reshape(1)
    _, seen = estimates(numel, gg, adam_sums(g, None, g, m, 1)[None])
    _, unseen = estimates(numel, gg, adam_sums(g, None, g, m, 0)[None])
    assert torch.isfinite(seen).all() and torch.isnan(unseen).all()


def test_the_estimates_corner_cases() -> None:
    """Rows of [Σd², Σg·m, Σm², Σg², count] beside a sampled tensor: a one-element tensor is its
    own sum; a tensor with no gradient at all has agreement (0, 0), not NaN; a sample that saw
    no gradient of a tensor that has even a small one gives NaN."""
    numel = torch.tensor([1.0, 65536.0, 65536.0, 65536.0])
    gg = torch.tensor([4.0, 0.0, 0.5, 8.0], dtype=torch.float64)
    sums = torch.tensor(
        [
            [9.0, 2.0, 1.0, 4.0, 1.0],  # exact, one element
            [3.0, 0.0, 5.0, 0.0, 8192.0],  # no gradient anywhere, momentum left
            [3.0, 0.0, 5.0, 0.0, 8192.0],  # gradient off the sampled pages
            [3.0, 1.0, 5.0, 2.0, 8192.0],  # sampled: ratio 8 / 2
        ],
        dtype=torch.float64,
    )
    dnorm, agreement = estimates(numel, gg, sums)
    assert dnorm.tolist() == pytest.approx([3.0, math.sqrt(24.0), math.sqrt(24.0), math.sqrt(24.0)])
    assert agreement[0].tolist() == [2.0, 1.0]
    assert agreement[1].tolist() == [0.0, 0.0]
    assert torch.isnan(agreement[2]).all()
    assert agreement[3].tolist() == [4.0, 20.0]


class _Wide(nn.Module):
    """A model with one tensor over the sampling threshold (300 x 300 = 87.9 pages)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = nn.Linear(20, 300), nn.Linear(300, 300), nn.Linear(300, 3)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def _wide_step(model: nn.Module, t: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(t)
    x, y = torch.randn(16, 20, generator=gen), torch.randint(0, 3, (16,), generator=gen)
    model.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss


ADAPTIVE = {
    "hypergradient_rate": 0.3,
    "adaptation_min": 0.2,
    "adaptation_max": 5.0,
}


def _run_wide(implementation: str | None, steps: int = 20) -> tuple[nn.Module, L3RS | ReferenceL3RS]:
    model = _Wide()
    config = L3RSConfig(directions=("sgd", "adam", "weight_decay"), **ADAPTIVE)
    fast = L3RS(model.parameters(), config, total_steps=steps, implementation=implementation or "foreach", seed=3)
    lively(fast)
    opt: L3RS | ReferenceL3RS = fast
    if implementation is None:
        opt = ReferenceL3RS([{"params": list(model.parameters())}], fast.net, fast.components, total_steps=steps)
    for t in range(steps):
        loss = _wide_step(model, t)
        opt.step(loss=loss) if isinstance(opt, L3RS) else opt.step(loss.item())
    return model, opt


@pytest.mark.parametrize("implementation", ["foreach", pytest.param("fused", marks=needs_fused), "compiled"])
def test_every_backend_steps_like_the_reference_on_a_sampled_tensor(implementation) -> None:
    ref_model, ref = _run_wide(None)
    model, opt = _run_wide(implementation)
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters()):
        rel = float((p - q).norm() / q.norm())
        assert rel < 1e-5, f"{name}: {rel:.2e}"
    assert isinstance(opt, L3RS)
    assert torch.allclose(opt.rate_multipliers, torch.exp(torch.tensor(ref.log_adapt, dtype=torch.float64)), rtol=1e-5)
    assert not torch.allclose(opt.rate_multipliers, torch.ones(6, dtype=torch.float64))  # adaptation did act


def test_sampling_changes_only_the_large_tensor_steps() -> None:
    """The rule is not exact Adam normalisation on the large tensor, but close: a run with it
    and one with the exact sums (every page read) stay within a few percent."""
    import hf_l3rs.optim.sampling as sampling

    sampled, _ = _run_wide("foreach")
    original = sampling.SAMPLE_MIN_PAGES
    try:
        sampling.SAMPLE_MIN_PAGES = 10**9
        exact, _ = _run_wide("foreach")
    finally:
        sampling.SAMPLE_MIN_PAGES = original
    rel = {n: float((p - q).norm() / q.norm()) for (n, p), q in zip(sampled.named_parameters(), exact.parameters())}
    assert 0 < max(rel.values()) < 0.05, rel
