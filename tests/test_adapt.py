"""edgevit adapt on the shipped digits model (the tiny architecture, trained): the swap carries every parameter
over, a few distillation steps lower the error on held-out images, an interrupted run resumes to the same weights,
and bad inputs are clear errors."""

from __future__ import annotations

import json

import pytest
import torch

import edgevit.adapt as adapt_mod
from edgevit.adapt import AdaptConfig, adapt, state_path, swap_attention
from edgevit.cli import main
from edgevit.errors import ConfigError, OutputExistsError
from edgevit.manifest import state_dict_sha256
from edgevit.models.checkpoint import load_weights
from edgevit.models.factory import build_model, embedded_data
from edgevit.models.nextvit import create_model

CALIB = embedded_data("nextvit_digits", "calib")
EVAL = embedded_data("nextvit_digits", "eval")


def _cfg(tmp_path, **kw):
    base = dict(model="nextvit_digits", attention="xca", data=CALIB, out=str(tmp_path / "xca.safetensors"),
                max_images=32, batch=8, block_steps=5, model_steps=3, save_every=3)
    base.update(kw)
    return AdaptConfig(**base)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("adapt")
    return adapt(_cfg(tmp, eval_dir=EVAL))


def test_swap_keeps_every_parameter_outside_the_attention():
    teacher = build_model(model="nextvit_digits", weights=None, random_init=False)
    student, fresh = swap_attention(teacher, "hilo")
    t, s = teacher.state_dict(), student.state_dict()
    outside = [k for k in t if ".e_mhsa." not in k]
    assert outside and all(torch.equal(t[k], s[k]) for k in outside)
    assert fresh == []  # HiLo takes all of E-MHSA's parameters (k/v split by head)
    _, fresh = swap_attention(teacher, "xca")
    assert fresh == [f"stages.{s}.blocks.{b}.e_mhsa.temperature" for s, b in ((1, 1), (2, 1), (3, 0))]


def test_distillation_lowers_the_error_on_held_out_images_and_writes_a_loadable_checkpoint(straight):
    rep = straight.report
    assert rep["eval_labeled"] and rep["eval_images"] == 450 and rep["steps"] == 8
    before, after = rep["before"], rep["after"]
    assert len(after["block_rel_err"]) == 3
    assert all(a < b for a, b in zip(after["block_rel_err"], before["block_rel_err"])), (before, after)
    assert after["output_rel_err"] < before["output_rel_err"]
    assert after["top1_original"] == before["top1_original"] > 0.95  # the shipped model on its held-out scans
    assert 0.0 <= after["top1"] <= 1.0 and 0.0 <= after["top1_agreement"] <= 1.0
    net = create_model("nextvit_digits", attention="xca")
    load_weights(net, straight.checkpoint)
    assert state_dict_sha256(net) == rep["checkpoint_sha256"]
    assert json.loads(straight.report_path.read_text())["checkpoint_sha256"] == rep["checkpoint_sha256"]
    assert not state_path(straight.checkpoint).exists()


def test_an_interrupted_run_resumes_to_the_same_weights(straight, tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)  # no eval_dir: what is measured does not change what is trained
    real = adapt_mod._batch_indices

    def interrupt_at_7(seed, step, n, batch):
        if step == 7:
            raise KeyboardInterrupt
        return real(seed, step, n, batch)

    monkeypatch.setattr(adapt_mod, "_batch_indices", interrupt_at_7)
    with pytest.raises(KeyboardInterrupt):
        adapt(cfg)
    state = torch.load(state_path(cfg.out), weights_only=True)
    assert state["step"] == 7 and not (tmp_path / "xca.safetensors").exists()
    monkeypatch.setattr(adapt_mod, "_batch_indices", real)
    resumed = adapt(cfg)
    assert resumed.report["checkpoint_sha256"] == straight.report["checkpoint_sha256"]
    assert not state_path(cfg.out).exists()


def test_a_state_from_other_inputs_is_refused_and_outputs_are_not_overwritten(straight, tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    monkeypatch.setattr(adapt_mod, "_batch_indices", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        adapt(cfg)
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="other inputs.*delete it to start over"):
        adapt(_cfg(tmp_path, seed=1))
    with pytest.raises(OutputExistsError):
        adapt(_cfg(tmp_path, out=str(straight.checkpoint)))
    with pytest.raises(ConfigError, match="choose --attention avgpool, xca, hilo"):
        _cfg(tmp_path, attention="emhsa")


def test_cli_adapt_prints_the_report(tmp_path, capsys):
    out = tmp_path / "avg.safetensors"
    rc = main(["adapt", "--model", "nextvit_digits", "--attention", "avgpool", "--data", CALIB, "--out", str(out),
               "--max-images", "16", "--batch", "8", "--block-steps", "2", "--model-steps", "1"])
    text = capsys.readouterr().out
    assert rc == 0 and out.is_file() and (tmp_path / "avg.safetensors.report.json").is_file()
    assert "stages.1.blocks.1" in text and "top-1 agreement with the original" in text


def test_few_pictures_are_warned_about(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="edgevit.adapt"):
        adapt(_cfg(tmp_path, max_images=16, block_steps=1, model_steps=0))
    assert any("adapting on 16 pictures" in r.getMessage() and "--data" in r.getMessage() for r in caplog.records)
