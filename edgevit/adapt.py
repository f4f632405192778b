"""``edgevit adapt``: carry a trained Next-ViT over to an attention variant (avgpool, xca, hilo) by distillation.

1. **Swap**: the variant model takes every parameter outside the attention as it is, and each NTB's attention takes
   the E-MHSA parameters that have a place in it (``BCHWAttention.carry_from``).
2. **Block distillation** (``block_steps``): every NTB's new attention, fed the original model's own input to that
   attention, learns to reproduce the original attention's output (mean squared error relative to the target's
   energy, summed over the NTBs); only attention parameters train. The blocks are independent here, so errors do
   not compound while they are fitted.
3. **Model distillation** (``model_steps``): the whole variant learns the original's outputs (logits, or the four
   feature maps in features mode), every parameter training at a lower rate.

Unlabeled images from ``data`` go through the checkpoint's preprocessing; every training batch is a random view of
them (shift, flip, contrast: the original labels each view itself). Every 8th picture is kept out of training, and
the weights kept at the end are those of the step, checked every ``save_every`` steps and including step 0 (right
after the swap), whose outputs are closest to the original's on them, so on those kept-out pictures the result is
never further from the original than the swap alone. The models stay in eval mode (BatchNorm statistics frozen, no
dropout or stochastic depth), and batch ``s`` and its views are drawn from generators seeded with ``(seed, s)``, so
a run is deterministic and a resumed run is the same run: the state (step, weights, optimizer) is saved every
``save_every`` steps and on Ctrl-C to ``OUT.adapt-state.pt`` (read back with ``weights_only``), and the next run
with the same inputs continues from it. The checkpoint is written atomically, with a JSON report beside it
(per-block error and output agreement before/after, top-1 on ``eval_dir`` when it is labeled).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgevit._io import atomic_file, check_writable
from edgevit.errors import CheckpointError, ConfigError
from edgevit.models.attention import ATTENTIONS, check_attention

log = logging.getLogger(__name__)
FEW_PICTURES = 256  # below this, adapt warns (measured: 64 pictures too few for xca, 512 enough)


@dataclass(frozen=True, kw_only=True)
class AdaptConfig:
    attention: str
    data: str
    out: str
    model: str = "nextvit_small"
    weights: str | None = None  # None: the model's shipped checkpoint
    eval_dir: str | None = None
    img_size: int | None = None
    max_images: int = 512
    batch: int = 16
    block_steps: int = 300
    model_steps: int = 300
    block_lr: float = 1e-3
    model_lr: float = 1e-5
    seed: int = 0
    save_every: int = 50
    overwrite: bool = False

    def __post_init__(self):
        check_attention(self.attention)
        if self.attention == "emhsa":
            raise ConfigError("adapt carries weights over to a variant: choose --attention "
                              f"{', '.join(a for a in ATTENTIONS if a != 'emhsa')}")
        for key in ("max_images", "batch", "save_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("block_steps", "model_steps"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.block_steps + self.model_steps == 0:
            raise ConfigError("nothing to do: block_steps and model_steps are both 0")
        if not (self.block_lr > 0 and self.model_lr > 0):
            raise ConfigError("learning rates must be > 0")
        if Path(self.out).suffix not in (".safetensors", ".pth", ".pt"):
            raise ConfigError(f"--out {self.out}: the adapted checkpoint is a .safetensors (or .pth/.pt) file")


@dataclass
class AdaptResult:
    checkpoint: Path
    report_path: Path
    report: dict


def _ntbs(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from edgevit.models.nextvit import NTB

    return [(n, m) for n, m in model.named_modules() if isinstance(m, NTB)]


def swap_attention(teacher: nn.Module, attention: str) -> tuple[nn.Module, list[str]]:
    """A copy of ``teacher`` (an E-MHSA Next-ViT) with ``attention`` in every NTB, initialised from it; returns the
    model and the names of the parameters that had no counterpart (they keep the variant's initialisation)."""
    from edgevit.models.nextvit import EMHSA, NextViT

    student = NextViT(replace(teacher.cfg, attention=attention)).eval()
    own = student.state_dict()
    carried = {k: v for k, v in teacher.state_dict().items() if ".e_mhsa." not in k and k in own}
    student.load_state_dict({**own, **carried}, strict=True)
    fresh = []
    for (name, s_blk), (_, t_blk) in zip(_ntbs(student), _ntbs(teacher)):
        if not isinstance(t_blk.e_mhsa, EMHSA):
            raise ConfigError(f"adapt starts from the original E-MHSA; {name} holds {type(t_blk.e_mhsa).__name__}")
        fresh += [f"{name}.e_mhsa.{p}" for p in s_blk.e_mhsa.carry_from(t_blk.e_mhsa)]
    return student, fresh


def attention_io(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], object]:
    """Every NTB's attention input and output as (B, C, H, W) maps, and the model's output, from one forward pass."""
    ins, outs, handles = [], [], []
    for _, blk in _ntbs(model):
        # norm1's output is the attention's input as a map (E-MHSA then reads it flattened to tokens)
        handles.append(blk.norm1.register_forward_hook(lambda mod, args, out: ins.append(out)))

        def to_map(mod, args, out):
            outs.append(out.transpose(1, 2).reshape(ins[-1].shape) if out.ndim == 3 else out)

        handles.append(blk.e_mhsa.register_forward_hook(to_map))
    try:
        result = model(x)
    finally:
        for h in handles:
            h.remove()
    return ins, outs, result


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error relative to the target's mean energy."""
    return ((a - b) ** 2).mean() / (b ** 2).mean().clamp_min(1e-12)


def _flat(out) -> torch.Tensor:
    return torch.cat([o.flatten(1) for o in out], 1) if isinstance(out, (list, tuple)) else out.flatten(1)


def _batch_indices(seed: int, step: int, n: int, batch: int) -> np.ndarray:
    rng = np.random.default_rng([seed, step])
    return rng.choice(n, size=min(batch, n), replace=False)


def _augment(x: torch.Tensor, seed: int, step: int) -> torch.Tensor:
    """Random views of a batch for distillation (the original labels each view itself, so any view is fair game and
    64 pictures go further): a shift of up to 1/8 of the side (reflect-padded), a horizontal flip, and a contrast
    and brightness change, drawn from ``(seed, step)``."""
    rng = np.random.default_rng([seed, step, 1])
    b, _, h, w = x.shape
    ph, pw = max(1, h // 8), max(1, w // 8)
    padded = F.pad(x, (pw, pw, ph, ph), mode="reflect")
    views = []
    for i in range(b):
        dy, dx = int(rng.integers(0, 2 * ph + 1)), int(rng.integers(0, 2 * pw + 1))
        v = padded[i, :, dy:dy + h, dx:dx + w]
        if rng.random() < 0.5:
            v = v.flip(-1)
        views.append(v * float(rng.uniform(0.8, 1.2)) + float(rng.uniform(-0.2, 0.2)))
    return torch.stack(views)


def _val_error(teacher, student, val: torch.Tensor) -> float:
    with torch.no_grad():
        return _rel_err(_flat(student(val)), _flat(teacher(val))).item()


def _measure(teacher, student, x: torch.Tensor, labels: list[int] | None, chunk: int = 32) -> dict:
    """Per-block relative error of the student's attention fed the teacher's inputs, and output agreement."""
    block_err, t_out, s_out = None, [], []
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            xb = x[i:i + chunk]
            ins, targets, t_logits = attention_io(teacher, xb)
            errs = []
            for (_, blk), xin, y in zip(_ntbs(student), ins, targets):
                errs.append(((blk.e_mhsa(xin) - y) ** 2).sum().item() / max((y ** 2).sum().item(), 1e-12))
            block_err = errs if block_err is None else [a + b for a, b in zip(block_err, errs)]
            t_out.append(_flat(t_logits))
            s_out.append(_flat(student(xb)))
    t, s = torch.cat(t_out), torch.cat(s_out)
    n_chunks = -(-len(x) // chunk)
    cos = torch.nn.functional.cosine_similarity(t, s, dim=1)
    rep = {"block_rel_err": [e / n_chunks for e in block_err], "cosine_mean": cos.mean().item(),
           "cosine_min": cos.min().item(), "output_rel_err": _rel_err(s, t).item()}
    if not teacher.cfg.features_only and teacher.cfg.num_classes > 0:
        rep["top1_agreement"] = (t.argmax(1) == s.argmax(1)).double().mean().item()
        if labels is not None:
            y = torch.tensor(labels)
            rep["top1_original"] = (t.argmax(1) == y).double().mean().item()
            rep["top1"] = (s.argmax(1) == y).double().mean().item()
    return rep


def _fingerprint(cfg: AdaptConfig, teacher_hash: str, files: list[Path]) -> str:
    h = hashlib.sha256()
    # save_every stays in: it decides at which steps the kept-out error is checked, hence which weights are kept
    keep = {k: v for k, v in asdict(cfg).items() if k not in ("out", "overwrite", "eval_dir")}
    h.update(json.dumps(keep, sort_keys=True).encode())
    h.update(teacher_hash.encode())
    for f in files:
        h.update(f"{f.name}|{f.stat().st_size}|".encode())
    return h.hexdigest()


def state_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".adapt-state.pt")


def adapt(cfg: AdaptConfig, *, progress: bool = False) -> AdaptResult:
    """Carry ``cfg.weights`` (E-MHSA) over to ``cfg.attention`` and distil it on ``cfg.data``; see the module doc.

    Example::

        result = adapt(AdaptConfig(model="nextvit_small", attention="xca", weights="nextvit_small.pth",
                                   data="unlabeled/", out="nextvit_small_xca.safetensors"))
        print(result.report["after"]["top1_agreement"])
    """
    from edgevit._progress import steps_bar
    from edgevit.manifest import state_dict_sha256
    from edgevit.models.factory import build_model, embedded_labels, embedded_weights
    from edgevit.models.nextvit import get_config
    from edgevit.models.pretrained import resolve_preprocess
    from edgevit.preprocess import Preprocess, list_images
    from edgevit.quantize.calibration import folder_labels, load_set, select

    out = Path(cfg.out)
    check_writable(out, cfg.overwrite, "adapted checkpoint")
    t0 = time.perf_counter()
    weights = cfg.weights or embedded_weights(cfg.model)
    if weights is None:
        raise ConfigError(f"{cfg.model} ships no checkpoint: pass --weights with the trained E-MHSA checkpoint to "
                          "carry over")
    teacher = build_model(model=cfg.model, weights=weights, random_init=False)
    for p in teacher.parameters():
        p.requires_grad_(False)
    values, _ = resolve_preprocess(model_default_size=get_config(cfg.model).default_img_size, weights=weights,
                                   overrides={"img_size": (cfg.img_size, cfg.img_size) if cfg.img_size else None})
    pre = Preprocess(size=tuple(values["img_size"]), mean=tuple(values["mean"]), std=tuple(values["std"]),
                     crop_pct=values["crop_pct"], interpolation=values["interpolation"], geometry=values["geometry"])
    files = select(list_images(cfg.data), cfg.max_images, seed=cfg.seed)
    images = torch.from_numpy(load_set(files, pre, "adaptation").normalized)
    if len(images) < FEW_PICTURES:
        log.warning("adapting on %d pictures: on the deep reference model, xca ended 0.67 points of top-1 behind the "
                    "original on 64 pictures and 0.44 on 512 (benchmarks/results/adapt_variants*.json); give --data "
                    "a few hundred unlabeled pictures if you have them", len(images))
    # every 8th picture is kept out of training: the weights kept are those of the step (0 = right after the swap)
    # with the lowest output error on them, checked every save_every steps (no labels needed)
    if len(images) >= 16:
        val_mask = torch.zeros(len(images), dtype=torch.bool)
        val_mask[::8] = True
        train, val = images[~val_mask], images[val_mask]
    else:
        train, val = images, images
    if cfg.eval_dir:
        names = None
        lab = embedded_labels(cfg.model) if not cfg.weights else None
        if lab:
            names = [ln.strip() for ln in Path(lab).read_text().splitlines() if ln.strip()]
        eval_files, labels = folder_labels(cfg.eval_dir, names, teacher.cfg.num_classes)
        held_set = load_set(eval_files, pre, "evaluation", labels)
        held = torch.from_numpy(held_set.normalized)
        eval_labels = held_set.labels.tolist() if held_set.labels is not None else None
    else:
        held, eval_labels = val, None
    student, fresh = swap_attention(teacher, cfg.attention)
    before = _measure(teacher, student, held, eval_labels)
    attn_params = [p for _, blk in _ntbs(student) for p in blk.e_mhsa.parameters()]
    opt_block = torch.optim.Adam(attn_params, lr=cfg.block_lr)
    opt_model = torch.optim.Adam(student.parameters(), lr=cfg.model_lr)
    total = cfg.block_steps + cfg.model_steps
    fingerprint = _fingerprint(cfg, state_dict_sha256(teacher), files)
    state_file, step, losses = state_path(out), 0, []
    val_curve = [(0, _val_error(teacher, student, val))]
    best = {"step": 0, "error": val_curve[0][1], "weights": {k: v.clone() for k, v in student.state_dict().items()}}
    if state_file.exists():
        try:
            state = torch.load(state_file, weights_only=True)
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file: say which and how to start over
            raise CheckpointError(f"cannot read the adapt state {state_file} ({e}); delete it to start over") from e
        if state.get("fingerprint") != fingerprint:
            raise ConfigError(f"{state_file} is the state of an adapt run with other inputs (options, weights or "
                              "images); delete it to start over, or rerun with the same inputs to resume")
        student.load_state_dict(state["student"])
        opt_block.load_state_dict(state["opt_block"])
        opt_model.load_state_dict(state["opt_model"])
        step, losses = int(state["step"]), list(state["losses"])
        best, val_curve = dict(state["best"]), [tuple(v) for v in state["val_curve"]]
        log.info("resuming %s at step %d of %d", state_file, step, total)

    def save_state():
        with atomic_file(state_file, overwrite=True) as tmp:
            torch.save({"fingerprint": fingerprint, "step": step, "losses": losses,
                        "student": student.state_dict(), "opt_block": opt_block.state_dict(),
                        "opt_model": opt_model.state_dict(), "best": best, "val_curve": val_curve}, tmp)

    bar = steps_bar(total, desc=f"adapt {cfg.attention}", initial=step) if progress else None
    try:
        while step < total:
            idx = torch.from_numpy(_batch_indices(cfg.seed, step, len(train), cfg.batch))
            xb = _augment(train[idx], cfg.seed, step)
            if step < cfg.block_steps:
                with torch.no_grad():
                    ins, targets, _ = attention_io(teacher, xb)
                loss = sum(_rel_err(blk.e_mhsa(xin), y) for (_, blk), xin, y in zip(_ntbs(student), ins, targets))
                opt = opt_block
            else:
                with torch.no_grad():
                    target = _flat(teacher(xb))
                loss = _rel_err(_flat(student(xb)), target)
                opt = opt_model
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(stage="block" if step <= cfg.block_steps else "model", loss=f"{losses[-1]:.4f}")
            if step % cfg.save_every == 0 or step == total:
                val_curve.append((step, _val_error(teacher, student, val)))
                if val_curve[-1][1] < best["error"]:
                    best = {"step": step, "error": val_curve[-1][1],
                            "weights": {k: v.clone() for k, v in student.state_dict().items()}}
            if step % cfg.save_every == 0 and step < total:
                save_state()
    except KeyboardInterrupt:
        save_state()
        log.warning("interrupted at step %d of %d; the state is in %s: rerun the same command to resume",
                    step, total, state_file)
        raise
    finally:
        if bar is not None:
            bar.close()
    student.load_state_dict(best["weights"])
    student.eval()
    after = _measure(teacher, student, held, eval_labels)
    from edgevit.models.checkpoint import save_weights

    save_weights(student, out, overwrite=cfg.overwrite)
    seconds = time.perf_counter() - t0

    def stage_losses(a, b):
        part = losses[a:b]
        k = max(1, min(10, len(part) // 5))
        return {"first": float(np.mean(part[:k])), "last": float(np.mean(part[-k:]))} if part else None

    report = {"model": cfg.model, "attention": cfg.attention, "weights": str(weights), "data": cfg.data,
              "images": len(train), "eval_dir": cfg.eval_dir, "eval_images": len(held),
              "eval_labeled": eval_labels is not None, "options": asdict(cfg), "fresh_parameters": fresh,
              "blocks": [n for n, _ in _ntbs(student)], "before": before, "after": after,
              "loss": {"block": stage_losses(0, cfg.block_steps), "model": stage_losses(cfg.block_steps, total)},
              "steps": total, "kept_step": best["step"], "val_images": len(val),
              "val_curve": [{"step": a, "output_rel_err": e} for a, e in val_curve], "seconds": seconds,
              "threads": torch.get_num_threads(),
              "checkpoint_sha256": state_dict_sha256(student)}
    report_path = out.with_name(out.name + ".report.json")
    with atomic_file(report_path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    state_file.unlink(missing_ok=True)
    return AdaptResult(checkpoint=out, report_path=report_path, report=report)


def format_report(rep: dict) -> str:
    b, a = rep["before"], rep["after"]
    lines = [f"{rep['model']} -> attention {rep['attention']}: {rep['steps']} steps on {rep['images']} images in "
             f"{rep['seconds']:.0f} s ({rep['threads']} threads); weights of step {rep['kept_step']} kept (lowest "
             f"output error on {rep['val_images']} pictures kept out of training)",
             f"{'block':<22} {'rel. error after swap':>22} {'after adapt':>12}"]
    for name, e0, e1 in zip(rep["blocks"], b["block_rel_err"], a["block_rel_err"]):
        lines.append(f"{name:<22} {e0:>22.4f} {e1:>12.4f}")
    for key, label in (("top1_agreement", "top-1 agreement with the original"), ("cosine_mean", "cosine mean"),
                       ("top1", "top-1 accuracy")):
        if key in a:
            extra = f" (original {a['top1_original']:.2%})" if key == "top1" else ""
            lines.append(f"{label}: {b[key]:.4f} after swap -> {a[key]:.4f} after adapt{extra}")
    return "\n".join(lines)
