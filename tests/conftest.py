"""Shared fixtures. Nothing is built at import or collection time; models are made inside fixtures.

`make test` runs the suite on every core with pytest-xdist (tools/run_tests.sh). Each worker's runtimes then use one
thread, so two workers do not fight over the same cores: set here, before torch is imported, for this process and
every child it starts (the CLI tests' subprocesses)."""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "EDGEVIT_THREADS"):
        os.environ.setdefault(_name, "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.artifacts import Artifacts  # noqa: E402

pytest_plugins = ["tests.durations"]

TINY = "nextvit_test_tiny"


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _xdist_group_kept(request):
    """A test marked ``xdist_group`` must carry its group in its node id under ``--dist loadgroup`` (how pytest-xdist
    keeps a group on one worker). With pytest 9.2 the mark was silently ignored: two local Ray clusters ran at once
    on the two workers and each built the shared 2x2x2 matrix."""
    group = request.node.get_closest_marker("xdist_group")
    if group is not None and os.environ.get("PYTEST_XDIST_WORKER") and request.config.getvalue("loadgroup"):
        name = group.args[0] if group.args else group.kwargs.get("name", "default")
        assert request.node.nodeid.endswith(f"@{name}"), (
            f"{request.node.nodeid} lost its xdist_group {name!r}: this pytest-xdist/pytest pair does not group "
            "tests (pytest-xdist issue 1386); install the dev extra's pytest (< 9.2)")


@pytest.fixture(autouse=True)
def _torch_threads_put_back():
    """PyTorch's float sums can round differently with another thread count, so code that changes it in the
    caller's process and does not put it back makes the tests after it in this worker compute other bits (seen: a
    shared reference artifact and its reproduction differing in golden/logits.bin)."""
    before = torch.get_num_threads()
    yield
    after = torch.get_num_threads()
    if after != before:
        torch.set_num_threads(before)
        pytest.fail(f"the test left torch.get_num_threads() at {after} (it was {before}); whatever changed it must "
                    "put it back (edgevit._native.torch_threads)")


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Artifacts:
    """Conversions made once per test run and shared by every xdist worker (see tests/artifacts.py). Also without
    pytest-xdist loaded (``-p no:xdist``), where there is no ``worker_id`` fixture."""
    base = tmp_path_factory.getbasetemp()
    return Artifacts((base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-artifacts")


@pytest.fixture(scope="session")
def tiny_model():
    """The tiny Next-ViT with deterministic random weights and measured BatchNorm statistics (do not mutate)."""
    from edgevit.models import create_model, randomize_

    return randomize_(create_model(TINY), seed=0)


@pytest.fixture
def tiny_input():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(123))


def _make_emhsa(sr: int, seed: int, dim: int = 64):
    """An E-MHSA with random weights and random BatchNorm1d statistics (for sr > 1)."""
    from edgevit.models.nextvit import EMHSA

    torch.manual_seed(seed)
    attn = EMHSA(dim, head_dim=32, sr_ratio=sr).eval()
    if attn.norm is not None:
        attn.norm.running_mean.normal_()
        attn.norm.running_var.uniform_(0.5, 2.0)
        attn.norm.weight.data.uniform_(0.5, 1.5)
        attn.norm.bias.data.normal_()
    return attn


def _reference_emhsa(attn, x: torch.Tensor) -> torch.Tensor:
    """Independent E-MHSA on tokens (B, N, C): explicit raster runs of sr*sr tokens (trailing ones dropped),
    BatchNorm written out, per-head loops."""
    b, n, c = x.shape
    r = attn.n_ratio if attn.sr is not None else 1
    kv = x
    if r > 1:
        pooled = torch.stack([x[:, i * r:(i + 1) * r].mean(1) for i in range(n // r)], 1)
        bn = attn.norm
        kv = (pooled - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    q, k, v = attn.q(x), attn.k(kv), attn.v(kv)
    out = torch.empty_like(q)
    d = attn.head_dim
    for h in range(attn.num_heads):
        s = slice(h * d, (h + 1) * d)
        out[..., s] = (q[..., s] @ k[..., s].transpose(1, 2) * d ** -0.5).softmax(-1) @ v[..., s]
    return attn.proj(out)


@pytest.fixture
def emhsa_reference():
    """(make(sr, seed) -> EMHSA, reference(attn, tokens) -> tokens)."""
    return _make_emhsa, _reference_emhsa
