"""LiteRT target (formerly TensorFlow Lite): ``.tflite`` from ``litert_torch.convert``, run in the LiteRT
interpreter with its XNNPACK delegate.

Precisions:
  fp32   as converted
  fp16   weights stored fp16 (ai-edge-quantizer FLOAT_CASTING, explicit dequantize): computed in fp32 by XNNPACK
         unless a device delegate chooses fp16
  int8w  dynamic range (ai-edge-quantizer ``dynamic_wi8_afp32``): int8 per-channel weights, float activations that
         XNNPACK quantizes on the fly
  int8   static (litert-torch's PT2E quantizer: int8 per-channel weights, int8 activations) calibrated on real
         images through the model's preprocessing. The converter folds a quantized graph input or output into the
         model's I/O type, so the ops that read the input and make the outputs stay float (the manifest lists
         them): the app feeds and reads float tensors.

The runtime is ``ai_edge_litert`` or, where only that is installed (a Raspberry Pi), ``tflite_runtime``, which has the
same Interpreter API (2.14 needs numpy < 2).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from edgevit._io import temp_dir
from edgevit._native import default_threads
from edgevit.errors import ConfigError, ExportError, MissingDependencyError
from edgevit.targets.base import ExportResult, Runner, Target, minor_release, register_target, run_batched
from edgevit.verify.tolerances import FP16, FP32, INT8

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"


def interpreter_class():
    """The LiteRT Interpreter: ai_edge_litert's, else tflite_runtime's (same API)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as e:
            raise MissingDependencyError("target litert needs the LiteRT interpreter (ai_edge_litert, or "
                                         "tflite_runtime on a device): pip install 'edgevit[litert]'") from e
    return Interpreter


def check_fallback_runtime(spec) -> None:
    """Where only tflite_runtime is installed: refuse what it computes wrongly, warn about the rest.

    tflite_runtime's last release (2.14, TensorFlow's numbering) predates every LiteRT (ai-edge-litert) release the
    converter targets. Measured on the shipped digits model (tests/targets/test_litert.py, slow run): fp32, fp16
    and int8 artifacts match their golden outputs in it, but an int8w (dynamic-range) artifact gives wrong outputs
    with and without XNNPACK, silently, so int8w is refused here (exit 5)."""
    if runtime_module() != "tflite_runtime":
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        have = version("tflite-runtime")
    except PackageNotFoundError:
        have = "unknown"
    scheme = (spec.details.get("quantization") or {}).get("scheme", "")
    if scheme.startswith("dynamic range"):
        raise MissingDependencyError(
            f"this int8w (dynamic-range int8) .tflite needs the LiteRT interpreter: tflite_runtime {have} runs its "
            "hybrid int8 kernels to wrong outputs (edgevit's check: cosine -0.70 to the golden output on the "
            "shipped digits model, where fp32, fp16 and int8 match); pip install 'ai-edge-litert>=2.3' (or "
            "'edgevit[litert]'), or convert with --precision int8 or fp16")
    log.warning("running on tflite_runtime %s, which predates LiteRT (the artifact was made for the LiteRT op set "
                "its manifest's runtime_requirements name); the parity check is what vouches for it", have)


def runtime_module() -> str:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
        return "ai_edge_litert"
    except ImportError:
        return "tflite_runtime"


@contextlib.contextmanager
def _quiet():
    """litert-torch draws progress lines and its converter logs natively; both go to the debug log."""
    from edgevit._native import native_stderr_to_log

    with warnings.catch_warnings(), native_stderr_to_log(log, "litert"):
        warnings.simplefilter("ignore")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    for line in (out.getvalue() + err.getvalue()).splitlines():
        if line.strip():
            log.debug("litert: %s", line)


def _io_modules(model, example) -> tuple[str, ...]:
    """Innermost module paths of the ops that read the graph input and of those that make its outputs."""
    import torch

    from edgevit.quantize.executorch_quant import module_paths

    graph = torch.export.export(model, (example,), strict=False).graph
    found: list[str] = []

    def first_in_a_module(nodes, step) -> None:
        """From ``nodes`` on (``step``: users or inputs), the first nodes traced inside a module (a wrapper's
        permute, for example, has none)."""
        seen, todo = set(), list(nodes)
        while todo:
            node = todo.pop()
            if node in seen or node.op in ("placeholder", "output", "get_attr"):
                continue
            seen.add(node)
            paths = [p for p in module_paths(node) if p]
            if paths:
                if paths[-1] not in found:
                    found.append(paths[-1])
            else:
                todo.extend(step(node))

    for node in graph.nodes:
        if node.op == "placeholder" and node.users and not node.name.startswith(("p_", "b_")):
            first_in_a_module(list(node.users), lambda n: list(n.users))
        elif node.op == "output":
            first_in_a_module(node.all_input_nodes, lambda n: n.all_input_nodes)
    return tuple(found)


def _annotate_adds_and_cats(gm, config, keep) -> int:
    """Annotate every ``aten.add.Tensor`` and ``aten.cat.default`` that ``keep(node)`` allows and nothing annotated
    yet, the way litert-torch's own "add" and "cat" annotators do (add: each tensor input and the output get the
    activation spec; cat: inputs and output share the first input's). Those annotators find their nodes through
    ``get_source_partitions``, which needs the ``source_fn_stack`` metadata that only a strict (dynamo) export
    records: on the non-strict export used here (torch 2.13) they matched none of Next-ViT's residual adds and
    concatenations, which then ran in float between DEQUANTIZE and QUANTIZE ops
    (``tests/targets/test_matrix.py`` checks none does). Returns how many nodes were annotated."""
    import torch
    from litert_torch.quantize import pt2e_quantizer_utils as pu
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    act = pu.get_input_act_qspec(config)
    out = pu.get_output_act_qspec(config)
    done = 0
    for node in gm.graph.nodes:
        if node.op != "call_function" or "quantization_annotation" in node.meta or not keep(node):
            continue
        if node.target == torch.ops.aten.add.Tensor:
            ins = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
            if len(ins) != 2 or any(not torch.is_floating_point(a.meta["val"]) for a in ins if "val" in a.meta):
                continue  # a tensor plus a constant: left to the converter, as litert-torch's annotator would
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={a: act for a in ins}, output_qspec=out, _annotated=True)
        elif node.target == torch.ops.aten.cat.default:
            ins = [a for a in node.args[0] if isinstance(a, torch.fx.Node)]
            if not ins:
                continue
            shared = SharedQuantizationSpec((ins[0], node))
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={ins[0]: act, **{a: shared for a in ins[1:]}}, output_qspec=shared,
                _annotated=True)
        else:
            continue
        done += 1
    return done


def _float_attention_scores(gm) -> int:
    """Drop the annotation of every ``mul`` that reads a batch matmul's output (the attention's scale on q @ k^T),
    so the scores are neither rounded to int8 before the softmax nor computed by an int8 BATCH_MATMUL: with the
    mul annotated, the converter turned q @ k^T into an int8 BATCH_MATMUL that XNNPACK does not take, and with the
    interpreter's own kernel the four NTBs ran 0.60x-1.55x their fp32 speed at 384 while every NCB ran 3.4-3.8x
    (``benchmarks/results/litert_int8_blocks_384.json``). Returns how many were dropped."""
    import torch

    matmuls = (torch.ops.aten.bmm.default, torch.ops.aten.matmul.default)
    done = 0
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target == torch.ops.aten.mul.Tensor \
                and "quantization_annotation" in node.meta \
                and any(isinstance(a, torch.fx.Node) and a.target in matmuls for a in node.args):
            del node.meta["quantization_annotation"]
            done += 1
    return done


def _pt2e_int8(model, example, calibration: np.ndarray, keep_float: tuple[str, ...], *,
               quantize_adds: bool = True, float_scores: bool = True):
    """PT2E int8 with litert-torch's quantizer; modules in ``keep_float`` are not annotated (stay float).
    ``quantize_adds``: also annotate the adds and concatenations its own annotators miss (``_annotate_adds_and_cats``);
    ``float_scores``: keep the attention scores float (``_float_attention_scores``). Both False reproduce
    litert-torch's quantizer as it is."""
    import torch
    from litert_torch.quantize import pt2e_quantizer as pq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgevit.quantize.calibration import calibration_batches
    from edgevit.quantize.executorch_quant import _in_any, module_paths

    class Quantizer(pq.PT2EQuantizer):
        # PT2EQuantizer.set_module_name refuses None ("not supported yet"); filter the annotators instead
        def _annotate_all_static_patterns(self, gm, config, filter_fn=None):
            def keep(node) -> bool:
                return (filter_fn is None or filter_fn(node)) and _in_any(module_paths(node), keep_float) is None

            gm = super()._annotate_all_static_patterns(gm, config, keep)
            if quantize_adds and config is not None:
                _annotate_adds_and_cats(gm, config, keep)
            if float_scores:
                _float_attention_scores(gm)
            return gm

    quantizer = Quantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    graph = torch.export.export(model, (example,), strict=False).module()
    matched = {m for node in graph.graph.nodes if (m := _in_any(module_paths(node), keep_float))}
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for x in calibration_batches(calibration, example.shape[0]):
            prepared(torch.from_numpy(x))
    return convert_pt2e(prepared, fold_quantize=False), quantizer, [k for k in keep_float if k in matched]


def write_tflite(model, example, path: Path, *, calibration: np.ndarray | None = None,
                 keep_float: tuple[str, ...] | None = None, **int8_options) -> None:
    """``model`` converted to ``path``: fp32, or int8 as the target converts it when ``calibration`` is given
    (``keep_float`` defaults to the float-I/O modules; ``int8_options`` go to ``_pt2e_int8``). For the benchmarks,
    which convert many forms outside the pipeline."""
    import litert_torch

    with _quiet():
        if calibration is None:
            litert_torch.convert(model, (example,)).export(str(path))
            return
        from litert_torch.quantize.quant_config import QuantConfig

        keep = _io_modules(model, example) if keep_float is None else keep_float
        converted, quantizer, _ = _pt2e_int8(model, example, calibration, keep, **int8_options)
        litert_torch.convert(converted, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(
            str(path))


def _ai_edge_quantize(float_path: Path, out_path: Path, precision: str) -> None:
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer, recipe, recipe_manager

    if precision == "int8w":
        rcp = recipe.dynamic_wi8_afp32()
    else:  # fp16 weights, explicitly dequantized to fp32 compute
        manager = recipe_manager.RecipeManager()
        manager.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                       num_bits=16, algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
        rcp = manager.get_quantization_recipe()
    q = quantizer.Quantizer(str(float_path))
    q.load_quantization_recipe(rcp)
    q.quantize().export_model(str(out_path), overwrite=True)


def _cached_transposes(model, example, layout: str) -> int:
    """TRANSPOSE ops in the fp32 .tflite of ``model``. The count depends on the graph's structure, not its weights,
    so it is cached per (module structure, input shape, layout, converter version) in EDGEVIT_CACHE (default
    ~/.cache/edgevit): the first conversion of an architecture pays one extra conversion per form counted this way
    (Next-ViT-S at 224 on 2 cores: 57 s for two, benchmarks/results/litert_form_transposes_small.txt, measured
    before an fp32 artifact's own count was used for its deployed form), later ones none."""
    import hashlib
    import json
    import os
    from importlib.metadata import version

    key = hashlib.sha256(json.dumps([str(model), list(example.shape), layout,
                                     version("litert-torch")]).encode()).hexdigest()
    cache = Path(os.environ.get("EDGEVIT_CACHE") or Path.home() / ".cache" / "edgevit") / "litert_transposes.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):  # a cache damaged into another JSON value only costs a recount
        known = {}
    if isinstance(known.get(key), int):
        return known[key]
    log.info("counting the TRANSPOSE ops of one form in LiteRT (one fp32 conversion; cached in %s)", cache)
    litert_torch = LiteRTTarget().require("litert_torch")
    if layout == "nhwc":
        model = litert_torch.to_channel_last_io(model, args=[0]).eval()
        example = example.permute(0, 2, 3, 1).contiguous()
    from edgevit.models.attention import one_pair_as_two

    with temp_dir("litert") as tmp, _quiet(), one_pair_as_two():
        path = Path(tmp) / "form.tflite"
        litert_torch.convert(model, (example,)).export(str(path))
        Interpreter = interpreter_class()
        ops = Interpreter(model_path=str(path), **_no_default_delegates())._get_ops_details()
    count = sum(1 for op in ops if op["op_name"] == "TRANSPOSE")
    try:  # a cache that cannot be written only costs time
        cache.parent.mkdir(parents=True, exist_ok=True)
        known[key] = count
        tmp_file = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp_file.write_text(json.dumps(known))
        os.replace(tmp_file, cache)
    except OSError:
        pass
    return count


def graph_report(path: Path) -> dict:
    """Operator counts of the .tflite graph (all, and those whose first input is float32), its I/O types, and the
    XNNPACK delegate's partitions."""
    Interpreter = interpreter_class()
    plain = Interpreter(model_path=str(path), experimental_preserve_all_tensors=False,
                        **_no_default_delegates())
    plain_ops = plain._get_ops_details()
    ops = Counter(op["op_name"] for op in plain_ops)
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in plain.get_tensor_details()}
    # the ops that compute in float: of an int8 graph, what its quantizer left unquantized (QUANTIZE/DEQUANTIZE aside)
    in_float = Counter(op["op_name"] for op in plain_ops
                       if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
                       and any(dtypes[i] == np.float32 for i in op["inputs"][:1] if i >= 0))
    with _quiet():
        delegated = Interpreter(model_path=str(path), num_threads=1)
        delegated.allocate_tensors()
    details = delegated._get_ops_details()
    original, delegates = details[:len(plain_ops)], [op for op in details if op["op_name"] == "DELEGATE"]
    outside = Counter(original[i]["op_name"] for i in _not_delegated(original, delegates))
    return {"op_counts": dict(sorted(ops.items())), "transposes": ops.get("TRANSPOSE", 0),
            "input_dtypes": [np.dtype(d["dtype"]).name for d in plain.get_input_details()],
            "output_dtypes": [np.dtype(d["dtype"]).name for d in plain.get_output_details()],
            "float_op_counts": dict(sorted(in_float.items())),
            "xnnpack_partitions": len(delegates),
            "delegated_ops": sum(ops.values()) - sum(outside.values()),
            "not_delegated": dict(sorted(outside.items()))}


def _not_delegated(original: list[dict], delegates: list[dict]) -> set[int]:
    """Indices of the original ops no XNNPACK partition took. A delegate node keeps the original ops in the
    interpreter's list and names only its partition's boundary tensors; its ops are those reached walking back
    from its outputs to its inputs."""
    producer = {t: op["index"] for op in original for t in op["outputs"]}
    taken: set[int] = set()
    for d in delegates:
        boundary = set(d["inputs"])
        stack = [producer[t] for t in d["outputs"] if t in producer]
        while stack:
            i = stack.pop()
            if i in taken:
                continue
            taken.add(i)
            stack.extend(producer[t] for t in original[i]["inputs"] if t in producer and t not in boundary)
    return {op["index"] for op in original} - taken


def module_scopes(model, example=None) -> dict[str, str]:
    """Module path -> the scope litert-torch writes into tensor names: ``<module>.<class>_<attribute>`` per level
    below the root's ``<module>.<class>``. litert-torch writes a level only for a module whose forward ran: with
    ``example``, a container the model iterates instead of calling (Next-ViT's features mode loops over
    ``stages``) adds no level."""
    root = f"{type(model).__module__}.{type(model).__qualname__}"
    modules = dict(model.named_modules())
    called = set(modules)
    if example is not None:
        import torch

        called = set()
        hooks = [m.register_forward_pre_hook(lambda _m, _i, p=p: called.add(p)) for p, m in modules.items()]
        try:
            with torch.no_grad():
                model(example)
        finally:
            for h in hooks:
                h.remove()
    scopes = {"": root}
    for path in modules:
        if not path:
            continue
        parent, _, attr = path.rpartition(".")
        m = modules[path]
        level = f"/{type(m).__module__}.{type(m).__qualname__}_{attr}" if path in called else ""
        scopes[path] = f"{scopes[parent]}{level}"
    return scopes


def _in_scope(name: str, scope: str) -> bool:
    return any(part.split(";")[0] == scope or part.split(";")[0].startswith(scope + "/") for part in name.split(";;"))


def tensor_layouts(ops: list[dict], tensors: dict, inputs: list[int], value_of,
                   input_layout: str = "NCHW") -> dict[int, str]:
    """NCHW / NHWC of every 4-D tensor, propagated through the graph from the input's layout; ``value_of(index)``
    reads a constant (a TRANSPOSE's permutation)."""
    layout = {t: input_layout for t in inputs}
    nhwc_ops = {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "TRANSPOSE_CONV"}
    for op in ops:  # the interpreter lists ops in execution order
        outs = [t for t in op["outputs"] if len(tensors[t]["shape"]) == 4]
        if not outs:
            continue
        if op["op_name"] in nhwc_ops:
            kind = "NHWC"
        elif op["op_name"] == "TRANSPOSE":
            src = layout.get(op["inputs"][0])
            perm = tuple(int(p) for p in np.asarray(value_of(op["inputs"][1])).ravel())
            kind = _permuted(src, perm)
        else:
            kind = next((layout[t] for t in op["inputs"] if t in layout), None)
        for t in outs:
            if kind:
                layout[t] = kind
    return layout


def _permuted(src: str | None, perm: tuple[int, ...]) -> str | None:
    if src is None or len(perm) != 4:
        return None
    out = "".join(src[p] for p in perm)
    return out if out in ("NCHW", "NHWC") else None


def _no_default_delegates() -> dict:
    try:
        from ai_edge_litert.interpreter import OpResolverType
    except ImportError:
        try:
            from tflite_runtime.interpreter import OpResolverType
        except ImportError:
            return {}
    return {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}


def signature_name(size: tuple[int, int]) -> str:
    return f"serving_{size[0]}x{size[1]}"


@register_target
class LiteRTTarget(Target):
    name = "litert"
    suffix = ".tflite"
    precisions = ("fp32", "fp16", "int8w", "int8")
    needs_calibration = ("int8",)
    extra = "litert"
    runtime = "ai_edge_litert"
    toolchain = ("litert_torch",)
    form_report_step = "count the original and deployed forms' TRANSPOSE ops (cached per architecture)"
    multi_size = "one signature per size in one .tflite (serving_default is the primary size, serving_<H>x<W> the " \
                 "others; the weights are stored once)"
    form = "litert"
    options = ("layout",)
    distributions = ("litert-torch", "ai-edge-litert", "ai-edge-quantizer")
    # fp16 stores weights in fp16 and XNNPACK computes in fp32 (weight rounding only); int8w quantizes activations at
    # run time, so it is held like static int8
    tolerance_rows = {"litert": {"fp32": FP32, "fp16": FP16, "int8w": INT8, "int8": INT8}}
    cost = 3.0

    def runtime_for(self, delegate):
        return f"LiteRT interpreter ({runtime_module()}, XNNPACK)"

    def check_options(self, cfg) -> None:
        if cfg.dynamic_batch:
            raise ConfigError("litert artifacts have a fixed batch here; drop --dynamic-batch or use --batch N")
        if cfg.extra_sizes and cfg.precision == "int8":
            raise ConfigError("a multi-size .tflite (--img-sizes) is built for fp32, fp16 and int8w here (int8 "
                              "activations are calibrated at one size); convert int8 once per size with --img-size")

    def export(self, model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
        with _quiet():  # its import logs natively (oneDNN notices)
            litert_torch = self.require("litert_torch")
        path = out_dir / "model.tflite"
        details: dict = {"layout": cfg.layout.upper()}
        inner = ""  # where the model's modules sit in what is converted
        if cfg.layout == "nhwc":  # the converter's channel-last I/O: the model permutes its NHWC input itself
            model, inner = litert_torch.to_channel_last_io(model, args=[0]).eval(), "wrapped."
            keep_float = tuple(inner + k for k in keep_float)
            example = example.permute(0, 2, 3, 1).contiguous()
            if calibration is not None:
                calibration = np.ascontiguousarray(calibration.transpose(0, 2, 3, 1))
        self.check_options(cfg)
        extra = cfg.extra_sizes

        def convert_float(net, target: Path) -> None:
            """The float model, with one more signature per extra size (each traced at its own static size)."""
            if not extra:
                litert_torch.convert(net, (example,)).export(str(target))
                return
            converter = litert_torch.signature(SIGNATURE, net, (example,))
            for h, w in extra:
                shape = (*example.shape[:2], h, w) if cfg.layout != "nhwc" else (example.shape[0], h, w,
                                                                                   example.shape[3])
                converter = converter.signature(signature_name((h, w)), net, (torch.zeros(shape),))
            converter.convert().export(str(target))

        import torch

        from edgevit.models.attention import one_pair_as_two

        try:
            with _quiet(), one_pair_as_two():
                if cfg.precision == "int8":
                    from litert_torch.quantize.quant_config import QuantConfig

                    io_float = _io_modules(model, example)
                    converted, quantizer, kept = _pt2e_int8(model, example, calibration,
                                                            tuple(keep_float) + io_float)
                    litert_torch.convert(converted, (example,),
                                         quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
                    details["quantization"] = {
                        "scheme": "int8 static (PT2E, litert-torch PT2EQuantizer)",
                        "weights": "int8 per-channel symmetric", "activations": "int8 per-tensor",
                        "adds_and_concatenations": "int8, annotated by edgevit (litert-torch's own annotators "
                                                   "match none on a non-strict export; docs/FORMS.md#litert)",
                        "attention_scores": "float: q @ k^T stays a float BATCH_MATMUL inside XNNPACK "
                                            "(docs/FORMS.md#litert)",
                        "calibration_images": int(len(calibration)),
                        "float_io_modules": [k.removeprefix(inner) for k in io_float],
                        "why_float_io": "the converter folds a quantized graph input/output into the model's I/O "
                                        "type; these modules stay float so the app feeds and reads float",
                        "kept_float": [k.removeprefix(inner) for k in kept if k in keep_float]}
                elif cfg.precision in ("fp16", "int8w"):
                    with temp_dir("litert") as tmp:
                        float_path = Path(tmp) / "float.tflite"
                        convert_float(model, float_path)
                        _ai_edge_quantize(float_path, path, cfg.precision)
                    details["quantization"] = {
                        "scheme": {"fp16": "fp16 weights (ai-edge-quantizer FLOAT_CASTING), fp32 compute",
                                   "int8w": "dynamic range (ai-edge-quantizer dynamic_wi8_afp32): int8 per-channel "
                                            "weights, activations quantized at run time"}[cfg.precision]}
                else:
                    convert_float(model, path)
        except (ConfigError, ExportError, MissingDependencyError):
            raise
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"LiteRT conversion failed: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}") from e
        report = graph_report(path)
        if any(d != "float32" for d in report["input_dtypes"] + report["output_dtypes"]):
            raise ExportError(f"the LiteRT model's inputs/outputs are {report['input_dtypes']} / "
                              f"{report['output_dtypes']}, not float32; this is a bug in edgevit's int8 path")
        details.update(report)
        details["signature"] = SIGNATURE
        if extra:
            h, w = (example.shape[1], example.shape[2]) if cfg.layout == "nhwc" else tuple(example.shape[2:])
            details["signatures"] = {f"{h}x{w}": SIGNATURE, **{f"{a}x{b}": signature_name((a, b)) for a, b in extra}}
        return ExportResult(artifact=path.name, details=details)

    def load(self, artifact_path, spec, *, threads=None) -> Runner:
        Interpreter = interpreter_class()
        check_fallback_runtime(spec)
        with _quiet():
            interpreter = Interpreter(model_path=str(artifact_path), num_threads=default_threads(threads) or 2)
            interpreter.allocate_tensors()
        by_size = spec.details.get("signatures") or {}
        runners = {}

        def signature(name: str):
            if name not in runners:
                runner = interpreter.get_signature_runner(name)
                out_keys = sorted(runner.get_output_details(), key=lambda k: int(k.rsplit("_", 1)[-1]))
                (in_key,) = runner.get_input_details()
                if len(out_keys) != len(spec.output_names):
                    raise ConfigError(f"{artifact_path} has {len(out_keys)} outputs, the manifest names "
                                      f"{len(spec.output_names)}")
                runners[name] = runner, in_key, out_keys
            return runners[name]

        signature(SIGNATURE)
        nhwc = spec.layout == "NHWC"

        def run(x: np.ndarray) -> list[np.ndarray]:
            # a multi-size .tflite: the signature made for this input's size
            runner, in_key, out_keys = signature(by_size.get(f"{x.shape[2]}x{x.shape[3]}", SIGNATURE))
            x = x.transpose(0, 2, 3, 1) if nhwc else x
            outs = runner(**{in_key: np.ascontiguousarray(x, np.float32)})
            return [np.asarray(outs[k], np.float32).copy() for k in out_keys]

        return lambda x: run_batched(run, x, spec.batch)

    def block_outputs(self, artifact_path, spec, units, x, *, threads=None, model=None, calibration=None):
        """The artifact's own intermediate tensors, preserved by the interpreter (``experimental_preserve_all_tensors``)
        with the builtin kernels: XNNPACK keeps a partition's tensors to itself, so the block rows come from LiteRT's
        builtin kernels on the same graph, and the final row from the artifact run as deployed (XNNPACK).

        litert-torch names every tensor after the module scope that made it (``<type>_<attribute>`` per level,
        ``;;`` between fused names), so a unit's output is the tensor made inside its scope and read outside it.
        Layouts come from the graph (convolutions and pools make NHWC, a TRANSPOSE permutes its input's, other ops
        keep their input's), never from shapes; int8 tensors are dequantized with their own scale."""
        if model is None:
            raise ConfigError("drift on a .tflite needs the deployed PyTorch model it was converted from")
        Interpreter = interpreter_class()
        check_fallback_runtime(spec)
        with _quiet():
            it = Interpreter(model_path=str(artifact_path), experimental_preserve_all_tensors=True,
                             **_no_default_delegates())
            it.allocate_tensors()
        ops = it._get_ops_details()
        tensors = {t["index"]: t for t in it.get_tensor_details()}
        inner = ""
        if spec.layout == "NHWC":  # converted inside litert-torch's channel-last wrapper, which names the scopes
            from litert_torch import to_channel_last_io

            model, inner = to_channel_last_io(model, args=[0]), "wrapped."
        import torch

        example = torch.zeros((spec.batch or 1, *x.shape[1:]), dtype=torch.float32)
        scopes = module_scopes(model, example.permute(0, 2, 3, 1) if spec.layout == "NHWC" else example)
        root = scopes[""]
        inputs = [d["index"] for d in it.get_input_details()]
        layout = tensor_layouts(ops, tensors, inputs, it.get_tensor, spec.layout)
        producer = {t: op["index"] for op in ops for t in op["outputs"]}
        readers: dict[int, set[int]] = {}
        for op in ops:
            for t in op["inputs"]:
                readers.setdefault(t, set()).add(op["index"])
        outputs = {d["index"] for d in it.get_output_details()}
        found, notes = {}, []
        for unit in units:
            scope = scopes.get(inner + unit)
            inside: set[int] = set()
            own: set[int] = set()  # ops named after the unit itself (not followers)
            for op in ops:  # execution order. Quantize/dequantize ops, and ops named after no module (layout
                # transposes the exporter's wrapper adds), belong to the unit that made their input
                follows = op["op_name"] in ("QUANTIZE", "DEQUANTIZE") or not any(
                    _in_scope(tensors[t]["name"], root) for t in op["outputs"])
                if scope and any(_in_scope(tensors[t]["name"], scope) for t in op["outputs"]):
                    inside.add(op["index"])
                    own.add(op["index"])
                elif follows and len(op["inputs"]) and producer.get(op["inputs"][0]) in inside:
                    inside.add(op["index"])
            leaving = [t for i in sorted(inside) for t in ops[i]["outputs"]
                       if t in outputs or readers.get(t, set()) - inside]
            if len(leaving) > 1:  # in a whole model (a detector's neck reads the stage outputs too), a fused op of
                # the neck can carry the unit's scope as a secondary name: the unit's output is the tensor whose
                # primary name (before ";;") is in the unit's scope and made by the unit's own op
                leaving = [t for t in leaving if producer.get(t) in own
                           and _in_scope(tensors[t]["name"].split(";;")[0], scope)] or leaving
            if len(leaving) != 1:
                notes.append(f"{unit}: {len(leaving)} tensors leave its scope in the .tflite graph; not compared")
                continue
            found[unit] = leaving[0]
        quantized = [u for u, t in found.items() if tensors[t]["quantization"][0]]
        if quantized:
            notes.append(f"{len(quantized)} unit outputs are int8 tensors, dequantized with their own scales")
        input_index = inputs[0]

        def fn(b: np.ndarray) -> list[np.ndarray]:
            b = b.transpose(0, 2, 3, 1) if spec.layout == "NHWC" else b
            it.set_tensor(input_index, np.ascontiguousarray(b, np.float32))
            it.invoke()
            values = []
            for t in found.values():
                v = it.get_tensor(t)
                scale, zero = tensors[t]["quantization"]
                v = (v.astype(np.float32) - zero) * scale if scale else v.astype(np.float32)
                values.append(v.transpose(0, 3, 1, 2) if layout.get(t) == "NHWC" else v)
            return values

        got = dict(zip(found, run_batched(fn, np.ascontiguousarray(x, np.float32), spec.batch))) if found else {}
        final = self.load(artifact_path, spec, threads=threads)(x)
        got[spec.output_names[0]] = final[0]
        return got, "the .tflite's own tensors preserved by the LiteRT interpreter (builtin kernels; the final row " \
                    "runs with XNNPACK)", notes

    def import_runtime(self) -> None:
        interpreter_class()

    def form_report(self, original, deployed, example, cfg, details: dict) -> dict:
        """TRANSPOSE ops of the original and the deployed form, each as an fp32 conversion with the artifact's
        layout: what the rewrites did to LiteRT's layout shuffles. An fp32 artifact is the deployed form's fp32
        conversion, so its own count is used; other precisions convert the deployed form in fp32 (whose count
        test_matrix checks against an fp16 artifact's)."""
        deployed_count = details["transposes"] if cfg.precision == "fp32" else \
            _cached_transposes(deployed, example, cfg.layout)
        return {"litert_transposes": {"original_form": _cached_transposes(original, example, cfg.layout),
                                      "deployed_form": deployed_count}}

    def versions(self):
        from importlib.metadata import PackageNotFoundError, version

        found = {}
        for package in ("litert-torch", "ai-edge-litert", "ai-edge-quantizer", "tflite-runtime"):
            try:
                found[package] = version(package)
            except PackageNotFoundError:
                continue
        return found

    def runtime_requirements(self, cfg) -> dict:
        made = self.versions().get("ai-edge-litert")
        if made is None:
            return {"runtime": "litert", "why": "the LiteRT interpreter with the builtin op set"}
        return {"runtime": "litert", "min_version": minor_release(made),
                "why": f"converted for the LiteRT {made} op set; an older interpreter is not promised to have "
                       "every op version this model uses"}
