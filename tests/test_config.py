"""Option values are checked up front, through the CLI and recipes: exit 2 with a message naming the option,
before any model is built (issue 15, principle 1 in part)."""

from __future__ import annotations

import pytest

from edgevit.cli import main

TINY = ["--model", "nextvit_test_tiny", "--random-init", "--target", "onnx"]


@pytest.fixture
def no_model(monkeypatch):
    import edgevit.pipeline as pipeline

    monkeypatch.setattr(pipeline, "build_model", lambda **k: (_ for _ in ()).throw(AssertionError("model built")))


@pytest.mark.parametrize("recipe,text", [
    ("overwrite: \"false\"", "option overwrite must be true or false, got 'false'"),
    ("rewrite: \"false\"", "option rewrite must be true or false"),
    ("batch: two", "option batch must be an integer, got 'two'"),
    ("img_size: [64]", "option img_size must be N, [H, W]"),
    ("seed: true", "option seed must be an integer, got True"),
    ("out: 123", "option out must be text, got 123"),
    ("opset: 18.7", "option opset must be an integer, got 18.7"),
    ("mean: [0.5, 0.5]", "option mean must be three numbers"),
    ("attention: xcit", "unknown attention 'xcit'; choose one of emhsa, avgpool, xca, hilo"),
])
def test_recipe_values_are_type_checked(tmp_path, capsys, no_model, recipe, text):
    path = tmp_path / "r.yaml"
    path.write_text(f"{recipe}\n")
    out = tmp_path / "o"
    args = ["convert", "--recipe", str(path), *TINY] + ([] if recipe.startswith("out:") else ["--out", str(out)])
    assert main(args) == 2
    assert text in capsys.readouterr().err
    assert not out.exists()


def test_overwrite_false_string_no_longer_replaces_a_folder(tmp_path, capsys, no_model):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    path = tmp_path / "r.yaml"
    path.write_text('overwrite: "false"\n')
    assert main(["convert", "--recipe", str(path), *TINY, "--out", str(out)]) == 2
    assert (out / "keep.txt").read_text() == "mine"


def test_binary_recipe_is_a_named_error(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    assert main(["convert", "--recipe", str(path), *TINY, "--out", str(tmp_path / "o")]) == 2
    assert "is not a YAML text file" in capsys.readouterr().err


@pytest.mark.parametrize("args,text", [
    (["--eval-count", "-1"], "eval_count must be >= 1"),
    (["--max-accuracy-drop", "-3", "--eval-dir", "."], "max_accuracy_drop is in top-1 points"),
    (["--img-size", "64x64x3"], "is not N or HxW"),
    (["--img-size", "10000"], "larger than edgevit's bound of 4096"),
    (["--batch", "100000"], "larger than edgevit's bound"),
    (["--crop-pct", "1.5"], "crop_pct must be in (0, 1]"),
])
def test_bad_option_values_exit_2_before_any_model(tmp_path, capsys, no_model, args, text):
    assert main(["convert", *TINY, "--out", str(tmp_path / "o"), *args]) == 2
    assert text in capsys.readouterr().err


def test_attention_with_a_whole_model_module_is_refused(tmp_path, capsys, no_model):
    det = tmp_path / "det.py"
    det.write_text("def build():\n    raise AssertionError('not called')\n")
    assert main(["convert", *TINY, "--out", str(tmp_path / "o"), "--attention", "hilo", "--module",
                 f"{det}:build"]) == 2
    assert "attention is a property of the model --module builds" in capsys.readouterr().err


def test_output_paths_that_cannot_work_are_refused_up_front(tmp_path, capsys, no_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["convert", *TINY, "--out", "."]) == 2
    assert "is the working folder" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(["convert", *TINY, "--out", "afile/sub"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
