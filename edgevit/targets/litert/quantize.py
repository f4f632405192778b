"""LiteRT's quantizers: int8 through litert-torch's PT2E quantizer (edgevit annotates the residual adds and
concatenations its annotators miss, keeps the attention scores and the I/O ops float), fp16 and int8w through
ai-edge-quantizer."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def io_modules(model, example) -> tuple[str, ...]:
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


def pt2e_int8(model, example, calibration: np.ndarray, keep_float: tuple[str, ...], *,
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


def ai_edge_quantize(float_path: Path, out_path: Path, precision: str) -> None:
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
