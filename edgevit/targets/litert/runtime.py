"""The LiteRT interpreter (ai_edge_litert, or tflite_runtime where only it is installed, with its limits) and
the runner of a ``.tflite``'s signatures, with XNNPACK."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import numpy as np

from edgevit._native import default_threads
from edgevit.errors import ConfigError, MissingDependencyError
from edgevit.targets.base import Runner
from edgevit.targets.common import run_batched

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
def quiet():
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


def no_default_delegates() -> dict:
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


def load_tflite(artifact_path, spec, *, threads=None) -> Runner:
    Interpreter = interpreter_class()
    check_fallback_runtime(spec)
    with quiet():
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
