"""A numpy interpreter for CoreML ML programs, so CoreML artifacts are checked on Linux where ``predict`` cannot run.

The program inside an ``.mlpackage`` is read with coremltools (protobuf + weight blobs) and evaluated operation by
operation with numpy, following the MIL operation definitions. Each operation computes in float32 from its
inputs; when the program declares an output as fp16 the result is rounded to float16 before the next operation
reads it, which emulates fp16 storage between ops (accumulation inside one op is float32 here: the Neural Engine
and GPU accumulate in at least fp16, so real devices can differ a little more; the fp16 tolerance allows for it).

An operation the interpreter does not know raises ``UnsupportedOpError`` naming it: never a silent pass.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from edgevit.targets.base import Runner
from edgevit.targets.common import run_batched
from edgevit.targets.coreml.ops import OPS, UnsupportedOpError
from edgevit.targets.coreml.ops_quant import store  # registers the quantized ops too


class CoreMLSimulator:
    """Evaluate the ``main`` function of an ``.mlpackage`` with numpy. ``run(feeds) -> {output name: array}``."""

    def __init__(self, package: str | Path):
        import coremltools as ct
        from coremltools.converters.mil.frontend.milproto.load import load as load_milproto

        package = Path(package)
        self.package = package
        mlmodel = ct.models.MLModel(str(package), skip_model_load=True)
        spec = mlmodel.get_spec()
        if spec.WhichOneof("Type") != "mlProgram":
            raise UnsupportedOpError(f"{package} is a {spec.WhichOneof('Type')} model; the simulator reads ML "
                                     "programs (convert_to='mlprogram')")
        self.spec = spec
        self.program = load_milproto(spec, spec.specificationVersion, mlmodel.weights_dir)
        self.function = self.program.functions["main"]
        self.input_names = list(self.function.inputs)
        self.output_names = [v.name for v in self.function.outputs]
        classify = [o for o in self.function.operations if o.op_type == "classify"]
        # a classifier's probabilities output, under the name the app sees in the model description
        self.aliases = {"probabilities": classify[0].outputs[1].name} if classify else {}
        self._check_supported()

    def op_counts(self) -> dict[str, int]:
        from collections import Counter

        return dict(sorted(Counter(o.op_type for o in self.function.operations).items()))

    def rank_changes(self) -> int:
        """Operations whose first input and output differ in rank (reshape, squeeze, expand_dims ...)."""
        count = 0
        for o in self.function.operations:
            if o.op_type in ("reshape", "squeeze", "expand_dims") and o.outputs:
                x = o.inputs.get("x")
                if x is not None and hasattr(x, "shape") and len(x.shape) != len(o.outputs[0].shape):
                    count += 1
        return count

    def _check_supported(self) -> None:
        unknown = sorted({o.op_type for o in self.function.operations if o.op_type != "const"} - set(OPS))
        if unknown:
            raise UnsupportedOpError(f"the CoreML simulator cannot evaluate {unknown} in {self.package}; nothing "
                                     "was checked. Verify this artifact with predict on macOS")

    def consumers(self, name: str) -> list[tuple[str, str]]:
        """(op type, output name) of each operation that reads the value ``name``."""
        found = []
        for o in self.function.operations:
            reads = [v for v in o.inputs.values() if hasattr(v, "name")] + \
                [i for v in o.inputs.values() if isinstance(v, (list, tuple)) for i in v if hasattr(i, "name")]
            if any(v.name == name for v in reads):
                found.append((o.op_type, o.outputs[0].name))
        return found

    def value_names(self) -> set[str]:
        return {v.name for o in self.function.operations for v in o.outputs}

    def run(self, feeds: dict[str, np.ndarray], extra: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """The program's outputs, plus the intermediate values named in ``extra`` (``edgevit drift``)."""
        from coremltools.converters.mil.mil import types

        env: dict[str, object] = {}
        for name, var in self.function.inputs.items():
            if name not in feeds:
                raise ValueError(f"missing input {name!r}; the program takes {self.input_names}")
            env[name] = store(types.builtin_to_string(var.dtype), feeds[name])

        def value(v):
            if isinstance(v, (list, tuple)):
                return [value(i) for i in v]
            if v.name in env:
                return env[v.name]
            if v.val is not None:
                return v.val
            raise KeyError(f"value {v.name} is used before it is computed")

        for operation in self.function.operations:
            if operation.op_type == "const":
                out = operation.outputs[0]
                env[out.name] = out.val
                continue
            impl = OPS.get(operation.op_type)
            if impl is None:
                raise UnsupportedOpError(f"CoreML simulator: unsupported operation {operation.op_type!r} "
                                         f"({operation.name})")
            args = {k: value(v) for k, v in operation.inputs.items()}
            try:
                result = impl(**args)
            except UnsupportedOpError:
                raise
            except Exception as e:  # noqa: BLE001 - name the op that failed
                raise UnsupportedOpError(f"CoreML simulator failed on {operation.op_type} {operation.name}: "
                                         f"{type(e).__name__}: {e}") from e
            results = result if isinstance(result, tuple) else (result,)
            for var, val in zip(operation.outputs, results):
                dtype = types.builtin_to_string(var.dtype) if not types.is_dict(var.sym_type) else "dict"
                env[var.name] = store(dtype, val) if dtype != "dict" else val
        outs = {name: env[name] for name in (*self.output_names, *extra)}
        for alias, name in self.aliases.items():
            outs.setdefault(alias, env[name])
        return outs


def can_predict() -> bool:
    """CoreML predictions need macOS and coremltools' native runtime."""
    if platform.system() != "Darwin":
        return False
    try:
        import coremltools.libcoremlpython  # noqa: F401
    except ImportError:
        return False
    return True


def runtime_name() -> str:
    """What runs CoreML programs here: ``predict`` on macOS, this simulator elsewhere (verify says which)."""
    return "coreml predict (macOS)" if can_predict() else "coreml simulator (numpy)"


def simulator_runner(package: Path, input_name: str | None, names: list[str], batch: int | None) -> Runner:
    """Run an ML program in the simulator; ``input_name`` None takes the program's first input."""
    sim = CoreMLSimulator(package)
    input_name = input_name or sim.input_names[0]

    def run(x):
        outs = sim.run({input_name: x.astype(np.float32)})
        if set(names) - set(outs):  # a delegate payload names its outputs itself, in the same order
            return [np.asarray(outs[n], dtype=np.float32) for n in sim.output_names]
        return [np.asarray(outs[n], dtype=np.float32).reshape(x.shape[0], -1) if n == "probabilities"
                else np.asarray(outs[n], dtype=np.float32) for n in names]

    return lambda x: run_batched(run, x, batch)
