"""Turn onnx-tensorrt's docs/operators.md into edgevit/targets/tensorrt/onnx_ops.json (the TensorRT ONNX parser's
supported-operator list that `edgevit convert --target tensorrt` checks every node against).

    git clone https://github.com/onnx/onnx-tensorrt && cd onnx-tensorrt && git log -1 --format=%H -- docs/operators.md
    python tools/tensorrt_ops_table.py onnx-tensorrt/docs/operators.md --commit <that hash> --release "10.1 GA"
"""

import argparse
import json
import re
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "edgevit" / "targets" / "tensorrt" / "onnx_ops.json"


def parse(text: str) -> dict:
    header = re.search(r"TensorRT (?P<trt>[\d.]+) supports operators in the inclusive range of opset (?P<lo>\d+) to "
                       r"opset (?P<hi>\d+)", text)
    if header is None:
        raise SystemExit("operators.md has no 'TensorRT X supports operators in the inclusive range' line")
    ops = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or cells[1] not in ("Y", "N") or not re.fullmatch(r"[A-Za-z0-9_]+", cells[0]):
            continue
        ops[cells[0]] = {"supported": cells[1] == "Y",
                         "types": [t.strip() for t in cells[2].split(",") if t.strip()] if len(cells) > 2 else [],
                         "restrictions": cells[3] if len(cells) > 3 else ""}
    return {"tensorrt": header["trt"], "opset_min": int(header["lo"]), "opset_max": int(header["hi"]),
            "operators": dict(sorted(ops.items()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("operators_md")
    ap.add_argument("--commit", required=True, help="onnx-tensorrt commit the file was read at")
    ap.add_argument("--release", required=True, help="the onnx-tensorrt release that commit is, e.g. '10.1 GA'")
    args = ap.parse_args()
    table = parse(Path(args.operators_md).read_text())
    table = {"source": f"https://github.com/onnx/onnx-tensorrt/blob/{args.commit}/docs/operators.md",
             "release": f"ONNX-TensorRT {args.release}", **table,
             "types_mean": "the element types of the operator's first input that the parser accepts"}
    OUT.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{OUT}: {len(table['operators'])} operators, TensorRT {table['tensorrt']}, opset "
          f"{table['opset_min']}-{table['opset_max']}")


if __name__ == "__main__":
    main()
